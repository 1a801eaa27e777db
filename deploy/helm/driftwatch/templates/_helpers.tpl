{{/* The release's object name, at most 63 characters. */}}
{{- define "driftwatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "driftwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "driftwatch.labels" -}}
{{ include "driftwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret whose keys become the container's environment variables, or nothing. */}}
{{- define "driftwatch.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.values -}}
{{- include "driftwatch.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The mode, checked. */}}
{{- define "driftwatch.mode" -}}
{{- if not (has .Values.mode (list "fleet" "sidecar")) -}}
{{- fail (printf "mode must be fleet or sidecar, not %q" .Values.mode) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}

{{/* The driftwatch container. */}}
{{- define "driftwatch.container" -}}
- name: driftwatch
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--config", "/etc/driftwatch/driftwatch.toml"]
  ports:
    - name: {{ .Values.http.portName }}
      containerPort: {{ .Values.http.port }}
      protocol: TCP
  env:
    # Over the image's defaults and the file: the listener and the data volume's paths.
    - name: DRIFTWATCH__HTTP__ADDR
      value: "0.0.0.0:{{ .Values.http.port }}"
    - name: DRIFTWATCH__TRIGGERS__SNAPSHOT_DIR
      value: /var/lib/driftwatch/snapshots
    {{- with .Values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with (include "driftwatch.secretName" .) }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- include "driftwatch.probe" (list . $) | nindent 4 }}
  {{- end }}
  {{- if and .Values.readinessProbe (eq .Values.mode "fleet") }}
  readinessProbe:
    {{- include "driftwatch.probe" (list .Values.readinessProbe $) | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: driftwatch-config
      mountPath: /etc/driftwatch
      readOnly: true
    - name: driftwatch-data
      mountPath: /var/lib/driftwatch
{{- end -}}

{{/* A probe of the values, its httpGet or tcpSocket aimed at the container's port.
Args: (list PROBE $). */}}
{{- define "driftwatch.probe" -}}
{{- $probe := deepCopy (index . 0) -}}
{{- $root := index . 1 -}}
{{- range $handler := list "httpGet" "tcpSocket" -}}
{{- if hasKey $probe $handler -}}
{{- $_ := set $probe $handler (set (default dict (index $probe $handler)) "port" $root.Values.http.portName) -}}
{{- end -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}

{{/* The driftwatch container's volumes. */}}
{{- define "driftwatch.volumes" -}}
- name: driftwatch-config
  configMap:
    name: {{ include "driftwatch.fullname" . }}
- name: driftwatch-data
  {{- if .Values.data.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.data.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.data.sizeLimit }}
  {{- end }}
{{- end -}}

{{/*
TOML of .Values.config. Not Helm's toToml: values files reach templates with every number a
float64, which toToml writes as 2.0 or 1.048576e+06, and driftwatch takes no float for an
integer key. Here a whole number is written as an integer (driftwatch takes an integer for a
float key), other numbers as they are; nulls are left out (`--set key=null` removes a key).
*/}}
{{- define "driftwatch.toml" -}}
{{- include "driftwatch.tomlTable" (dict "table" . "path" list) | trimAll "\n" -}}
{{- end -}}

{{- define "driftwatch.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "driftwatch.tomlIsTables" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) -}}true{{- end -}}
{{- end -}}

{{- define "driftwatch.tomlValue" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $e := . -}}{{- if $i -}}, {{ end -}}{{- include "driftwatch.tomlValue" $e -}}{{- end -}}]
{{- else if kindIs "map" . -}}
{ {{- $first := true -}}{{- range $k, $v := . -}}{{- if not (kindIs "invalid" $v) -}}{{- if not $first -}}, {{ end -}}{{- $first = false -}}{{ include "driftwatch.tomlKey" $k }} = {{ include "driftwatch.tomlValue" $v }}{{- end -}}{{- end -}} }
{{- else -}}
{{- fail (printf "config: %v (%s) has no TOML form" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "driftwatch.tomlTable" -}}
{{- $path := .path -}}
{{- range $k, $v := .table -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "driftwatch.tomlIsTables" $v)) }}
{{ include "driftwatch.tomlKey" $k }} = {{ include "driftwatch.tomlValue" $v }}
{{- end -}}
{{- end -}}
{{- range $k, $v := .table -}}
{{- $p := append $path (include "driftwatch.tomlKey" $k) -}}
{{- if kindIs "map" $v }}

[{{ join "." $p }}]
{{- include "driftwatch.tomlTable" (dict "table" $v "path" $p) -}}
{{- else if include "driftwatch.tomlIsTables" $v -}}
{{- range $e := $v }}

[[{{ join "." $p }}]]
{{- include "driftwatch.tomlTable" (dict "table" $e "path" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
