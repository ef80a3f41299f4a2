// Package check verifies the deployment files under docs/deploy: every Kubernetes manifest decodes
// strictly (unknown fields are errors) into the official API types, the compose file loads with
// the compose specification's validation, the gateway config they ship is valid for smsgate, and
// the alert rules and the Grafana dashboard count what they claim (with promtool).
// It is a module of its own so the main module does not carry the Kubernetes dependencies;
// .ci/run runs it.
package check

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/smsgate/smsgate/gateway/app"
)

// kinds maps apiVersion/kind to a fresh value of the official Go type.
var kinds = map[string]func() any{
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                             func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return &monitoringv1.ServiceMonitor{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
}

func TestKubernetesManifestsUseOnlyRealFields(t *testing.T) {
	files, _ := filepath.Glob("../kubernetes/*.yaml")
	if len(files) < 7 {
		t.Fatalf("found %d manifests", len(files))
	}
	seen := map[string]any{}
	secrets := map[string]*corev1.Secret{}
	for _, f := range files {
		kind, obj, err := decodeManifest(f)
		if err != nil {
			t.Error(err)
			continue
		}
		seen[kind] = obj
		if s, ok := obj.(*corev1.Secret); ok {
			secrets[s.Name] = s
		}
	}
	d, _ := seen["Deployment"].(*appsv1.Deployment)
	if d == nil {
		t.Fatal("no Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness is not /readyz: %+v", c.ReadinessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop drain")
	}
	grace := *d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if pre := c.Lifecycle.PreStop.Sleep; pre == nil || grace < pre.Seconds+20 {
		t.Errorf("terminationGracePeriodSeconds %d must cover the preStop pause and shutdown_timeout (20s)", grace)
	}
	// The Go runtime's memory bound is set, below the container's limit.
	limit := c.Resources.Limits.Memory()
	var gomem int64
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			gomem = goMemLimit(t, e.Value)
		}
	}
	if limit.IsZero() || gomem <= limit.Value()/2 || gomem >= limit.Value() {
		t.Errorf("GOMEMLIMIT %d bytes, want it set between half and all of limits.memory (%s)", gomem, limit)
	}
	// No secret is in the environment, which every process of the container inherits and which a
	// rotation does not reach: the pods mount the Secrets as files, and the config reads them with
	// ${file:...} (checked below against what the example Secrets hold).
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			t.Errorf("env %s comes from secret %s: mount it as a file and read it with ${file:...}", e.Name, r.SecretKeyRef.Name)
		}
	}
	// The migration Job runs smsgate migrate on the Deployment's config, with the same environment.
	j, _ := seen["Job"].(*batchv1.Job)
	if j == nil {
		t.Fatal("no migration Job")
	}
	jc := j.Spec.Template.Spec.Containers[0]
	if want := append([]string{"migrate"}, c.Args[1:]...); c.Args[0] != "serve" || !slices.Equal(jc.Args, want) {
		t.Errorf("the Job runs %v, want %v (the Deployment runs %v)", jc.Args, want, c.Args)
	}
	// Only the Deployment mounts the spool (storage.spool_dir): migrate writes no records.
	mounts := slices.DeleteFunc(slices.Clone(c.VolumeMounts), func(m corev1.VolumeMount) bool { return m.Name == "spool" })
	volumes := slices.DeleteFunc(slices.Clone(d.Spec.Template.Spec.Volumes), func(v corev1.Volume) bool { return v.Name == "spool" })
	if len(mounts) == len(c.VolumeMounts) {
		t.Error("the Deployment mounts no spool for storage.spool_dir")
	}
	if !reflect.DeepEqual(jc.Env, c.Env) || !reflect.DeepEqual(jc.VolumeMounts, mounts) ||
		!reflect.DeepEqual(j.Spec.Template.Spec.Volumes, volumes) {
		t.Error("the Job's environment, volumes or mounts differ from the Deployment's: it would migrate with another config")
	}
	if p := j.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
		t.Errorf("the Job's restartPolicy is %q", p)
	}
	// The ConfigMap's gateway config is valid for smsgate, with the environment it gets and the
	// files its ${file:...} references read from the Secrets the pods mount.
	cm, _ := seen["ConfigMap"].(*corev1.ConfigMap)
	checkGatewayConfig(t, cm.Data["smsgate.yaml"], podEnv(c), mountedSecrets(t, d.Spec.Template.Spec, c, secrets))
	if !strings.Contains(cm.Data["smsgate.yaml"], "${file:") || !strings.Contains(cm.Data["smsgate.yaml"], "watch_config:") {
		t.Error("the ConfigMap reads no tenant key from a mounted Secret, or does not watch it: a new key would need a restart")
	}
}

// podEnv is the environment container c is given by value (a variable from a Secret would be a
// secret in the environment, which the Kubernetes test refuses).
func podEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// mountedSecrets maps the files that container c of pod p sees from its Secret volumes to what
// they hold (the example Secrets' values).
func mountedSecrets(t *testing.T, p corev1.PodSpec, c corev1.Container, secrets map[string]*corev1.Secret) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range p.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			s := secrets[v.Secret.SecretName]
			if s == nil {
				t.Errorf("volume %s mounts secret %s, in no example Secret", v.Name, v.Secret.SecretName)
				continue
			}
			for k, val := range s.StringData {
				files[path.Join(m.MountPath, k)] = val
			}
		}
	}
	return files
}

// decodeManifest reads one Kubernetes manifest strictly (an unknown field is an error) into the
// official type of its kind.
func decodeManifest(file string) (kind string, obj any, err error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", nil, err
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	mk, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return "", nil, fmt.Errorf("%s: no type for %s %s", file, head.APIVersion, head.Kind)
	}
	obj = mk()
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	return head.Kind, obj, nil
}

// manifest decodes file as decodeManifest does and wants it to be a T.
func manifest[T any](t *testing.T, file string) T {
	t.Helper()
	_, obj, err := decodeManifest(file)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := obj.(T)
	if !ok {
		t.Fatalf("%s holds a %T", file, obj)
	}
	return v
}

// TestTheStatefulSetRunsTheDeploymentsPods: kubernetes/statefulset/ replaces the Deployment for
// a spool that outlives its pod and node (a volume per replica). Its pods must be the Deployment's
// but for that volume, or one of the two would drift from what the test above checks; its volume
// must be writable by the non-root user, kept when a replica is scaled away, and its headless
// Service must select its pods without being scraped as a second copy of them.
func TestTheStatefulSetRunsTheDeploymentsPods(t *testing.T) {
	d := manifest[*appsv1.Deployment](t, "../kubernetes/deployment.yaml")
	s := manifest[*appsv1.StatefulSet](t, "../kubernetes/statefulset/statefulset.yaml")
	svc := manifest[*corev1.Service](t, "../kubernetes/statefulset/service-pods.yaml")
	mon := manifest[*monitoringv1.ServiceMonitor](t, "../kubernetes/servicemonitor.yaml")

	withoutSpool := func(p corev1.PodTemplateSpec) corev1.PodTemplateSpec {
		p = *p.DeepCopy()
		p.Spec.Volumes = slices.DeleteFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "spool" })
		return p
	}
	if !reflect.DeepEqual(withoutSpool(d.Spec.Template), s.Spec.Template) {
		t.Errorf("the StatefulSet's pod template differs from the Deployment's beyond the spool's volume:\nDeployment:  %+v\nStatefulSet: %+v",
			withoutSpool(d.Spec.Template), s.Spec.Template)
	}
	if !reflect.DeepEqual(d.Spec.Selector, s.Spec.Selector) || *d.Spec.Replicas != *s.Spec.Replicas {
		t.Error("the StatefulSet's selector or replicas differ from the Deployment's")
	}
	var claim *corev1.PersistentVolumeClaim
	for i := range s.Spec.VolumeClaimTemplates {
		if s.Spec.VolumeClaimTemplates[i].Name == "spool" {
			claim = &s.Spec.VolumeClaimTemplates[i]
		}
	}
	if claim == nil || !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
		claim.Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("no ReadWriteOnce claim named spool with a size: %+v", s.Spec.VolumeClaimTemplates)
	}
	sc := s.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Error("the pods' fsGroup is not their runAsGroup: the non-root process could not write its spool volume")
	}
	if r := s.Spec.PersistentVolumeClaimRetentionPolicy; r == nil || r.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		r.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("the spool volumes are not retained (%+v): records a replica left there would go with a scale-down", r)
	}
	if s.Spec.ServiceName != svc.Name || svc.Spec.ClusterIP != corev1.ClusterIPNone ||
		!reflect.DeepEqual(svc.Spec.Selector, s.Spec.Template.Labels) {
		t.Errorf("serviceName %q: want the headless Service %q selecting the pods (clusterIP %q, selector %v)",
			s.Spec.ServiceName, svc.Name, svc.Spec.ClusterIP, svc.Spec.Selector)
	}
	for k, v := range mon.Spec.Selector.MatchLabels {
		if svc.Labels[k] == v {
			t.Errorf("the ServiceMonitor selects the headless Service too (%s=%s): every replica would be scraped twice", k, v)
		}
	}
}

// TestTheSpoolJobRunsOnAReplicasVolume: the Job that writes a scaled-away replica's spool runs
// smsgate spool on the StatefulSet's config, environment and image, with a replica's claim
// mounted where the replica had its spool, writable by the non-root user.
func TestTheSpoolJobRunsOnAReplicasVolume(t *testing.T) {
	s := manifest[*appsv1.StatefulSet](t, "../kubernetes/statefulset/statefulset.yaml")
	j := manifest[*batchv1.Job](t, "../kubernetes/statefulset/jobs/spool-job.yaml")
	c, jc := s.Spec.Template.Spec.Containers[0], j.Spec.Template.Spec.Containers[0]
	if want := append([]string{"spool"}, c.Args[1:]...); !slices.Equal(jc.Args, want) || jc.Image != c.Image {
		t.Errorf("the Job runs %s %v, want %s %v", jc.Image, jc.Args, c.Image, want)
	}
	if !reflect.DeepEqual(jc.Env, c.Env) {
		t.Error("the Job's environment differs from the StatefulSet's: it would write into another log")
	}
	mountOf := func(ms []corev1.VolumeMount, name string) *corev1.VolumeMount {
		for i := range ms {
			if ms[i].Name == name {
				return &ms[i]
			}
		}
		return nil
	}
	for _, name := range []string{"config", "spool"} {
		if m, jm := mountOf(c.VolumeMounts, name), mountOf(jc.VolumeMounts, name); m == nil || jm == nil || !reflect.DeepEqual(*m, *jm) {
			t.Errorf("the Job mounts %s as %+v, the StatefulSet as %+v", name, jm, m)
		}
	}
	var claim string
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.Name == "spool" && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	// A StatefulSet names a replica's claim <template>-<set>-<ordinal>.
	if !strings.HasPrefix(claim, s.Spec.VolumeClaimTemplates[0].Name+"-"+s.Name+"-") {
		t.Errorf("the Job mounts claim %q, not one of the StatefulSet's", claim)
	}
	if sc := j.Spec.Template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != *s.Spec.Template.Spec.SecurityContext.FSGroup {
		t.Error("the Job's fsGroup is not the replicas': it could not write the spool's file")
	}
	if p := j.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever {
		t.Errorf("the Job's restartPolicy is %q", p)
	}
}

func TestComposeFileLoadsWithTheSpecification(t *testing.T) {
	t.Setenv("SMSGATE_KEY_SECRET", "check-key-secret-0123456789")
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"}, cli.WithOsEnv, cli.WithWorkingDirectory(".."), cli.WithName("smsgate"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, want := range []string{"smsgate-1", "smsgate-2", "smsgate-3", "lb", "postgres", "redis", "prometheus"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	for name, s := range p.Services {
		if !strings.HasPrefix(name, "smsgate-") {
			if s.Image == "" {
				t.Errorf("%s has no official image", name)
			}
			continue
		}
		if s.Environment["SMSGATE_DSN"] == nil || s.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s: environment or depends_on incomplete", name)
		}
	}
	raw, err := os.ReadFile("../smsgate-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkComposeSpools(t, p, raw)
	env := map[string]string{}
	for k, v := range p.Services["smsgate-1"].Environment {
		if v != nil {
			env[k] = *v
		}
	}
	checkGatewayConfig(t, string(raw), env, nil)
}

// checkComposeSpools: each replica of the compose file keeps the spool its config names
// (storage.spool_dir) on a named volume of its own, declared at the top level, so that it outlives
// `docker compose down` (an anonymous volume is left behind there) and no replica meets another's.
func checkComposeSpools(t *testing.T, p *types.Project, cfg []byte) {
	t.Helper()
	var c struct {
		Storage struct {
			SpoolDir string `json:"spool_dir"`
		} `json:"storage"`
	}
	if err := yaml.Unmarshal(cfg, &c); err != nil || c.Storage.SpoolDir == "" {
		t.Fatalf("smsgate-cluster.yaml names no storage.spool_dir (%v)", err)
	}
	owner := map[string]string{}
	for name, s := range p.Services {
		if !strings.HasPrefix(name, "smsgate-") {
			continue
		}
		var spool string
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && (c.Storage.SpoolDir == v.Target || strings.HasPrefix(c.Storage.SpoolDir, strings.TrimSuffix(v.Target, "/")+"/")) {
				spool = v.Source
			}
		}
		switch _, declared := p.Volumes[spool]; {
		case spool == "":
			t.Errorf("%s keeps its spool (%s) on no named volume", name, c.Storage.SpoolDir)
		case !declared:
			t.Errorf("%s: its spool's volume %q is not declared under volumes", name, spool)
		case owner[spool] != "":
			t.Errorf("%s and %s share the spool volume %q", owner[spool], name, spool)
		default:
			owner[spool] = name
		}
	}
}

// checkGatewayConfig runs smsgate's own validation on cfg with env, the container's environment
// (where its ${NAME} references read: each must be there), and files (a path in the container, and
// what it holds) where its ${file:...} references and tenant_files read: each must be one of them.
func checkGatewayConfig(t *testing.T, cfg string, env, files map[string]string) {
	t.Helper()
	warnings, err := loadGatewayConfig(t, cfg, env, files)
	if err != nil {
		t.Errorf("the shipped gateway config is invalid:\n%v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if !bytes.Contains([]byte(cfg), []byte("driver: postgres")) {
		t.Error("the cluster config must use the shared PostgreSQL log")
	}
}

// loadGatewayConfig is smsgate validate on cfg, the files written under a temporary directory
// where the container sees them, and every path of their directories in cfg and in the files
// (a tenant file's own references) moved there with them.
func loadGatewayConfig(t *testing.T, cfg string, env, files map[string]string) ([]string, error) {
	t.Helper()
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); strings.HasPrefix(k, "SMSGATE_") {
			t.Setenv(k, "") // restored when the test ends
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	var moves []string
	for name := range files {
		d := path.Dir(name) + "/"
		if !slices.Contains(moves, d) {
			moves = append(moves, d, filepath.ToSlash(filepath.Join(dir, "mounted", filepath.FromSlash(d)))+"/")
		}
	}
	move := strings.NewReplacer(moves...)
	for name, content := range files {
		local := filepath.Join(dir, "mounted", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(move.Replace(content)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "smsgate.yaml")
	if err := os.WriteFile(file, []byte(move.Replace(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	return app.Check(file)
}

// goMemLimit parses a GOMEMLIMIT value as the Go runtime does: a number of bytes with an optional
// B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(t *testing.T, v string) int64 {
	t.Helper()
	mult := int64(1)
	for i, suf := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n, ok := strings.CutSuffix(v, suf); ok {
			v, mult = n, int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(v, "B"), 10, 64)
	if err != nil {
		t.Fatalf("GOMEMLIMIT %q: %v", v, err)
	}
	return n * mult
}

// TestEveryAlertHasAUnitTest: every rule of prometheus/alerts.yml is evaluated by at least one
// case of prometheus/alerts_test.yml (which .ci/run runs with promtool test rules), so that an
// alert whose expression cannot fire, as the single-event ones could not on a counter's first
// count, is caught before it is needed.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	for file, into := range map[string]any{"../prometheus/alerts.yml": &rules, "../prometheus/alerts_test.yml": &tests} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	tested := map[string]bool{}
	for _, c := range tests.Tests {
		for _, a := range c.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	var n int
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !tested[r.Alert] {
				t.Errorf("alert %s has no case in alerts_test.yml", r.Alert)
			}
		}
	}
	if n < 20 {
		t.Errorf("read %d alerts from alerts.yml", n)
	}
}

// TestATeamsTenantsLoadWithinTheirBounds: kubernetes/team/ hands the payments team its own
// ConfigMap and keys' Secret, which a Role lets it edit and nothing else. Its tenants load
// through the tenant_files entry and the volumes operations.md says to add, mounted as the pods
// would mount them, with the gateway's own config and keys; a team file that sets itself a rate
// limit is refused.
func TestATeamsTenantsLoadWithinTheirBounds(t *testing.T) {
	cm := manifest[*corev1.ConfigMap](t, "../kubernetes/team/configmap.yaml")
	keys := manifest[*corev1.Secret](t, "../kubernetes/team/secret.example.yaml")
	role := manifest[*rbacv1.Role](t, "../kubernetes/team/role.yaml")
	binding := manifest[*rbacv1.RoleBinding](t, "../kubernetes/team/rolebinding.yaml")
	var names []string
	for _, r := range role.Rules {
		if slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "create" || v == "delete" || v == "*" }) || len(r.ResourceNames) == 0 {
			t.Errorf("the Role grants %v on %v beyond objects it names", r.Verbs, r.Resources)
		}
		names = append(names, r.ResourceNames...)
	}
	if want := []string{cm.Name, keys.Name}; !slices.Equal(names, want) || binding.RoleRef.Name != role.Name {
		t.Errorf("the Role names %v (want %v), the binding refers to %q", names, want, binding.RoleRef.Name)
	}

	// The two blocks of operations.md: the tenant_files entry and the pod template's additions.
	doc, err := os.ReadFile("../../operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var entry, pod string
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		switch {
		case strings.HasPrefix(block, "tenant_files:") && strings.Contains(block, "/etc/smsgate-teams/"):
			entry = block
		case strings.HasPrefix(block, "volumes:") && strings.Contains(block, cm.Name):
			pod = block
		}
	}
	var add struct {
		Volumes      []corev1.Volume      `json:"volumes"`
		VolumeMounts []corev1.VolumeMount `json:"volumeMounts"`
	}
	if entry == "" || pod == "" {
		t.Fatal("operations.md lacks the team's tenant_files entry or its volumes")
	}
	if err := yaml.UnmarshalStrict([]byte(pod), &add); err != nil {
		t.Fatalf("operations.md's volumes: %v", err)
	}
	d := manifest[*appsv1.Deployment](t, "../kubernetes/deployment.yaml")
	c := d.Spec.Template.Spec.Containers[0]
	p := d.Spec.Template.Spec
	p.Volumes = append(slices.Clone(p.Volumes), add.Volumes...)
	c.VolumeMounts = append(slices.Clone(c.VolumeMounts), add.VolumeMounts...)
	files := mountedSecrets(t, p, c, map[string]*corev1.Secret{keys.Name: keys,
		"smsgate":             manifest[*corev1.Secret](t, "../kubernetes/secret.example.yaml"),
		"smsgate-tenant-keys": manifest[*corev1.Secret](t, "../kubernetes/tenant-keys.example.yaml")})
	for _, m := range add.VolumeMounts {
		for _, v := range add.Volumes {
			if v.Name != m.Name {
				continue
			}
			if (v.ConfigMap == nil || v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) && (v.Secret == nil || v.Secret.Optional == nil || !*v.Secret.Optional) {
				t.Errorf("volume %s is not optional: pods would not start before the team's objects exist", v.Name)
			}
			if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				for k, val := range cm.Data {
					files[path.Join(m.MountPath, k)] = val
				}
			}
		}
	}
	cfg := manifest[*corev1.ConfigMap](t, "../kubernetes/configmap.yaml").Data["smsgate.yaml"] + entry
	checkGatewayConfig(t, cfg, podEnv(c), files)

	// The team sets itself a rate limit: refused, at its line.
	for name, content := range files {
		if strings.HasSuffix(name, "/tenants.yaml") {
			files[name] = strings.Replace(content, "    allowed_countries:", "    rate_limits: {per_tenant: 100000/1m}\n    allowed_countries:", 1)
		}
	}
	if _, err := loadGatewayConfig(t, cfg, podEnv(c), files); err == nil || !strings.Contains(err.Error(), "may not set rate_limits") {
		t.Errorf("a team's file with a rate limit of its own: %v", err)
	}
}
