package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: driftwatch
spec:
  selector:
    matchLabels: {app: driftwatch}
  template:
    metadata:
      labels: {app: driftwatch}
    spec:
      containers:
        - name: driftwatch
          image: driftwatch:0.1.0
          livenessProbe:
            httpGet: {path: /healthz, port: 9464}
`

func check(t *testing.T, text string) (int, []error) {
	t.Helper()
	return checkStream(newDecoder(), "test.yaml", strings.NewReader(text), io.Discard, "")
}

func TestAcceptsValidDocumentsAndSkipsEmptyOnes(t *testing.T) {
	text := "# only a comment\n---\n" + validDeployment + "---\n" + `
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: dw}
spec:
  selector: {matchLabels: {app: driftwatch}}
  podMetricsEndpoints: [{port: http, path: /metrics}]
`
	n, problems := check(t, text)
	if len(problems) != 0 || n != 2 {
		t.Fatalf("want 2 documents and no problem, got %d and %v", n, problems)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]struct{ text, want string }{
		"unknown field": {
			strings.Replace(validDeployment, "livenessProbe:", "livenesProbe:", 1),
			`unknown field "spec.template.spec.containers[0].livenesProbe"`,
		},
		"misplaced field": {
			strings.Replace(validDeployment, "  selector:", "  replica: 3\n  selector:", 1),
			`unknown field "spec.replica"`,
		},
		"wrong type": {
			strings.Replace(validDeployment, "spec:\n  selector", "spec:\n  replicas: three\n  selector", 1),
			"replicas",
		},
		"duplicate field": {
			strings.Replace(validDeployment, "image: driftwatch:0.1.0", "image: a\n          image: b", 1),
			`key "image" already set`,
		},
		"unknown kind": {
			"apiVersion: v1\nkind: Pod2\nmetadata: {name: x}\n",
			"no kind \"Pod2\"",
		},
		"unknown field in a CRD": {
			"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  selector: {}\n  endpoint: []\n",
			`unknown field "spec.endpoint"`,
		},
		"probe on a port the container lacks": {
			strings.Replace(validDeployment, "port: 9464", "port: metrics", 1),
			`liveness probe names port "metrics"`,
		},
		"port name used twice in a pod": {
			strings.Replace(validDeployment, "          livenessProbe:", "          ports: [{name: http, containerPort: 1}]\n        - name: b\n          image: b\n          ports: [{name: http, containerPort: 2}]\n          livenessProbe:", 1),
			`both name a port "http"`,
		},
		"mount of an undeclared volume": {
			strings.Replace(validDeployment, "          livenessProbe:", "          volumeMounts: [{name: data, mountPath: /data}]\n          livenessProbe:", 1),
			`mounts volume "data"`,
		},
		"no name": {
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
			"metadata.name is empty",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, problems := check(t, c.text)
			if len(problems) != 1 {
				t.Fatalf("want one problem, got %v", problems)
			}
			if !strings.Contains(problems[0].Error(), c.want) {
				t.Fatalf("want a problem mentioning %q, got %v", c.want, problems[0])
			}
		})
	}
}

func TestWritesTheConfigMapsTomlFiles(t *testing.T) {
	dir := t.TempDir()
	text := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dw}\ndata:\n  driftwatch.toml: |\n    [window]\n    slide = \"30s\"\n  other.txt: x\n"
	_, problems := checkStream(newDecoder(), "cm.yaml", strings.NewReader(text), io.Discard, dir)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dw.driftwatch.toml"))
	if err != nil || string(got) != "[window]\nslide = \"30s\"\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("want only the .toml key written, got %v", entries)
	}
}
