// Command kubecheck decodes Kubernetes manifests strictly against the API types: every
// document of every file given (or of standard input with "-") must be a kind registered below,
// and a field the type does not have, a duplicate field or a value of the wrong type is an
// error. It checks what `kubectl apply --validate=strict` would, without a cluster or
// downloaded schemas.
//
// With -configs DIR, each ConfigMap's keys ending in .toml are written to DIR as
// <ConfigMap name>.<key>, for `driftwatch config check`.
//
// Usage: kubecheck [-configs DIR] FILE... (one line per document; exit status 1 on any problem)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// newDecoder returns a strict decoder for the kinds driftwatch's manifests use.
func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme,
		corev1.AddToScheme,
		policyv1.AddToScheme,
		monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// checkStream decodes each YAML document of r; it returns how many documents it decoded and
// the problems found, each prefixed with name and the document's number.
func checkStream(dec runtime.Decoder, name string, r io.Reader, out io.Writer, configs string) (int, []error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var problems []error
	n := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return n, problems
		}
		if err != nil {
			return n, append(problems, fmt.Errorf("%s: reading: %w", name, err))
		}
		if isEmpty(doc) {
			continue
		}
		n++
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: document %d: %w", name, n, err))
			continue
		}
		objName := ""
		if accessor, err := meta.Accessor(obj); err == nil {
			objName = accessor.GetName()
		}
		if objName == "" {
			problems = append(problems, fmt.Errorf("%s: document %d (%s): metadata.name is empty", name, n, gvk.Kind))
			continue
		}
		if d, ok := obj.(*appsv1.Deployment); ok {
			if err := checkPod(&d.Spec.Template.Spec); err != nil {
				problems = append(problems, fmt.Errorf("%s: document %d (Deployment %s): %w", name, n, objName, err))
				continue
			}
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && configs != "" {
			if err := writeConfigs(cm, configs); err != nil {
				problems = append(problems, fmt.Errorf("%s: document %d: %w", name, n, err))
				continue
			}
		}
		fmt.Fprintf(out, "ok %s: %s %s/%s\n", name, gvk.GroupVersion(), gvk.Kind, objName)
	}
}

// checkPod checks what the API server's validation would refuse and decoding cannot see: port
// names unique in the pod and at most 15 characters, probes aimed at a named port of their own
// container, volume mounts of declared volumes.
func checkPod(pod *corev1.PodSpec) error {
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	podPorts := map[string]string{}
	for _, c := range pod.Containers {
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			if len(p.Name) > 15 {
				return fmt.Errorf("container %s: port name %q is longer than 15 characters", c.Name, p.Name)
			}
			if other, dup := podPorts[p.Name]; dup {
				return fmt.Errorf("containers %s and %s both name a port %q", other, c.Name, p.Name)
			}
			podPorts[p.Name] = c.Name
			ports[p.Name] = true
		}
		for kind, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			if port := probe.HTTPGet.Port; port.StrVal != "" && !ports[port.StrVal] {
				return fmt.Errorf("container %s: %s probe names port %q, which the container does not have", c.Name, kind, port.StrVal)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Errorf("container %s: mounts volume %q, which the pod does not declare", c.Name, m.Name)
			}
		}
	}
	return nil
}

// writeConfigs writes the ConfigMap's TOML files to dir as <name>.<key>.
func writeConfigs(cm *corev1.ConfigMap, dir string) error {
	for key, text := range cm.Data {
		if !strings.HasSuffix(key, ".toml") {
			continue
		}
		path := filepath.Join(dir, cm.Name+"."+key)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// isEmpty is true for a document holding only comments or nothing (helm template emits such
// documents for templates that render nothing).
func isEmpty(doc []byte) bool {
	var v interface{}
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return false
	}
	return v == nil || len(bytes.TrimSpace(doc)) == 0
}

func main() {
	configs := flag.String("configs", "", "write the ConfigMaps' .toml keys to this directory")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck [-configs DIR] FILE... (- for standard input)")
		os.Exit(2)
	}
	dec := newDecoder()
	var problems []error
	total := 0
	for _, name := range flag.Args() {
		var r io.Reader
		if name == "-" {
			r = os.Stdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			defer f.Close()
			r = f
		}
		n, p := checkStream(dec, name, r, os.Stdout, *configs)
		if n == 0 && len(p) == 0 {
			p = append(p, fmt.Errorf("%s: no Kubernetes object in it", name))
		}
		total += n
		problems = append(problems, p...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "error:", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "%d problem(s) in %d document(s)\n", len(problems), total)
		os.Exit(1)
	}
	fmt.Printf("%d document(s) decoded strictly\n", total)
}
