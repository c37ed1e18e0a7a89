package packaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/testenv"
)

// labelRun is set on every image, volume and container the tests create,
// with a value unique to the test: `docker ps -a --filter
// label=sdhub.test.run` finds what a crashed run left.
const labelRun = "sdhub.test.run"

// waitTimeout bounds every wait.
const waitTimeout = 60 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Fatal(t, waitTimeout, 200*time.Millisecond, what, cond)
}

// dockerCmd runs the docker CLI and returns its trimmed stdout.
func dockerCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerCmd(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compose is the part of examples/docker-compose.yml the image test
// reproduces.
type compose struct {
	Services map[string]struct {
		Image   string    `yaml:"image"`
		Command yaml.Node `yaml:"command"` // a string or a list
		Volumes []string  `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// sdhubLayout is how the compose file runs sdhub: its command, the named
// volume on the output directory, the directory of the config bound
// read-only.
type sdhubLayout struct {
	image, volume, outDir, configDir, hostConfigDir, configFile string
	command                                                     []string
}

func readCompose(t *testing.T) sdhubLayout {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "examples", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	s, ok := c.Services["sdhub"]
	if !ok {
		t.Fatal("examples/docker-compose.yml has no sdhub service")
	}
	l := sdhubLayout{image: s.Image}
	if err := s.Command.Decode(&l.command); err != nil {
		t.Fatalf("the sdhub service's command is not a list: %v", err)
	}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if _, named := c.Volumes[parts[0]]; named && len(parts) == 2 {
			l.volume, l.outDir = parts[0], parts[1]
		} else if len(parts) == 3 && parts[2] == "ro" && strings.HasPrefix(parts[0], ".") {
			l.hostConfigDir, l.configDir = filepath.Join(root, "examples", parts[0]), parts[1]
		} else {
			t.Fatalf("sdhub mounts %q: neither a named volume nor a read-only bind", v)
		}
	}
	for _, a := range l.command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			l.configFile = v
		}
		if v, ok := strings.CutPrefix(a, "--output.dir="); ok && v != l.outDir {
			t.Fatalf("--output.dir=%s, but the named volume is on %s", v, l.outDir)
		}
	}
	if l.volume == "" || l.configDir == "" || filepath.Dir(l.configFile) != l.configDir {
		t.Fatalf("want a named volume on the output directory and the config file's directory bound read-only; got %+v", l)
	}
	if st, err := os.Stat(l.hostConfigDir); err != nil || !st.IsDir() {
		t.Fatalf("the config bind is not a directory: %v", err)
	}
	return l
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestImage builds the image with scripts/image.sh and runs it on the real
// Docker engine the way examples/docker-compose.yml runs it: the compose's
// command, a named volume on the output directory and the config's
// directory bound read-only, with the compose's Consul services (its
// consul.d/, on a real agent; the Consul image cannot be pulled here). It
// checks that sdhub runs as its own user, writes each job's file into the
// volume (the consul job's with the service its relabelling keeps), serves
// /-/ready and /metrics, and reloads when the config is edited by rename.
// The container shares the host's network (the agent listens on loopback)
// and listens on a free port instead of 9099.
func TestImage(t *testing.T) {
	_, err := exec.LookPath("docker")
	testenv.Require(t, "docker CLI", err == nil, "not on PATH (scripts/deps/docker.sh installs it)")
	_, err = dockerCmd("info")
	testenv.Require(t, "docker engine", err == nil, fmt.Sprint(err))
	layout := readCompose(t)
	if layout.image != "sdhub:latest" {
		t.Errorf("the compose runs image %q, not the sdhub:latest of make image", layout.image)
	}

	run := "sdhub-image-" + randHex(4)
	label := labelRun + "=" + run
	tag := "sdhub-test:" + run
	build := exec.Command("scripts/image.sh", "-t", tag, "--label", label)
	build.Dir = root
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	t.Logf("image built in %s", time.Since(start).Round(time.Second))
	t.Cleanup(func() { _, _ = dockerCmd("image", "rm", "--force", tag) })
	var img struct {
		Config struct {
			User    string
			Volumes map[string]any
			Labels  map[string]string
		}
		Size int64
	}
	if err := json.Unmarshal([]byte(docker(t, "image", "inspect", "--format", "{{json .}}", tag)), &img); err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "65532:65532" || img.Config.Labels[labelRun] != run {
		t.Errorf("image user %q, labels %v: want 65532:65532 and %s", img.Config.User, img.Config.Labels, label)
	}
	if _, ok := img.Config.Volumes[layout.outDir]; !ok {
		t.Errorf("image volumes %v, want %s", img.Config.Volumes, layout.outDir)
	}
	t.Logf("image size %.1f MiB", float64(img.Size)/(1<<20))

	// The compose's Consul services, on a real agent.
	agent := consulagent.StartT(t, consulagent.Options{ConfigDir: filepath.Join(layout.hostConfigDir, "consul.d")})
	// A copy of the compose's config directory's config file, pointed at the
	// agent, readable by the container's user.
	cfgDir := t.TempDir()
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(layout.hostConfigDir, filepath.Base(layout.configFile)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(orig), "consul:8500", agent.Addr())
	cfgFile := filepath.Join(cfgDir, filepath.Base(layout.configFile))
	replace(t, cfgFile, cfg)

	c := runContainer(t, run, tag, layout, "-v", cfgDir+":"+layout.configDir+":ro")

	// Every job's file, in the volume, written by sdhub's user; the consul
	// job keeps the service tagged "metrics".
	// The agent registers consul.d's services in its catalog a moment after
	// it is ready: wait for the one tagged "metrics".
	var files map[string]tarFile
	waitFor(t, "the jobs' files in the volume, with consul.d's services", func() bool {
		files = c.volume(t)
		return bytes.Contains(files["./consul-services.json"].data, []byte(`"prometheus:9090"`)) && files["./sdhub.json"].data != nil
	})
	for name, f := range files {
		if f.hdr.Uid != 65532 {
			t.Errorf("%s in the volume belongs to uid %d, not sdhub's 65532", name, f.hdr.Uid)
		}
	}
	var entries []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(files["./consul-services.json"].data, &entries); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, e := range entries {
		if strings.Contains(e.Labels["__meta_consul_tags"], ",metrics,") {
			kept++
			if e.Labels["__meta_consul_service"] != "prometheus" || e.Targets[0] != "prometheus:9090" {
				t.Errorf("kept target %v %v, want consul.d's prometheus:9090", e.Targets, e.Labels)
			}
		}
	}
	if kept != 1 {
		t.Errorf("%d targets tagged metrics, want 1:\n%s", kept, files["./consul-services.json"].data)
	}
	if top := strings.Fields(docker(t, "top", c.name, "-o", "pid,uid")); len(top) != 4 || top[3] != "65532" {
		t.Errorf("docker top: %q, want sdhub alone, as uid 65532", top)
	}
	body := c.get(t, "/metrics")
	for _, s := range []string{`sdhub_output_targets{job="consul-services"} 2`, `sdhub_config_last_reload_successful 1`, `sdhub_build_info{`} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}

	// An edit by rename, as editors and ConfigMaps make it, reaches sdhub
	// through the bound directory.
	replace(t, cfgFile, cfg+"  - job_name: extra\n    static_configs: [{targets: [\"127.0.0.1:9300\"]}]\n")
	waitFor(t, "extra.json after the config was replaced", func() bool { return c.volume(t)["./extra.json"].data != nil })

	t.Run("a bound file misses edits by rename", func(t *testing.T) {
		// The pitfall the compose file and the README warn of: with the
		// file bound alone, the container keeps the replaced file, even
		// on SIGHUP.
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "sdhub.yml")
		replace(t, file, cfg)
		c := runContainer(t, run+"-file", tag, layout, "-v", file+":"+layout.configFile+":ro")
		waitFor(t, "sdhub.json", func() bool { return c.volume(t)["./sdhub.json"].data != nil })
		before := c.metric(t, "sdhub_config_last_reload_success_timestamp_seconds")
		replace(t, file, cfg+"  - job_name: extra\n    static_configs: [{targets: [\"127.0.0.1:9300\"]}]\n")
		docker(t, "kill", "--signal", "HUP", c.name)
		waitFor(t, "the reload", func() bool { return c.metric(t, "sdhub_config_last_reload_success_timestamp_seconds") != before })
		if c.volume(t)["./extra.json"].data != nil {
			t.Error("a bound file showed an edit by rename")
		}
	})
}

// replace writes content to path the way editors do: a new file renamed
// over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// container is a running sdhub container.
type container struct {
	name, addr, outDir string
}

// runContainer runs image as the compose file runs sdhub, with a new named
// volume on the output directory and the config mounted by mount, and
// removes both when the test ends.
func runContainer(t *testing.T, name, image string, l sdhubLayout, mount ...string) *container {
	t.Helper()
	label := labelRun + "=" + name
	volume := name + "-" + l.volume
	docker(t, "volume", "create", "--label", label, volume)
	t.Cleanup(func() { _, _ = dockerCmd("volume", "rm", "--force", volume) })
	c := &container{name: name, addr: freePort(t), outDir: l.outDir}
	args := []string{"run", "--detach", "--name", name, "--label", label, "--network", "host", "-v", volume + ":" + l.outDir}
	args = append(append(args, mount...), image)
	args = append(append(args, l.command...), "--web.listen-address="+c.addr)
	docker(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Logf("container %s log:\n%s", name, logs)
		}
		_, _ = dockerCmd("rm", "--force", name)
	})
	waitFor(t, "sdhub ready in the container", func() bool {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + c.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

func (c *container) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(b)
}

// metric returns the value of the sample whose line starts with series.
func (c *container) metric(t *testing.T, series string) string {
	t.Helper()
	for _, line := range strings.Split(c.get(t, "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return ""
}

// volume returns the files of the container's output directory, through
// the engine (docker cp), whatever host the engine runs on.
func (c *container) volume(t *testing.T) map[string]tarFile {
	t.Helper()
	cmd := exec.Command("docker", "cp", c.name+":"+c.outDir+"/.", "-")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker cp: %v", err)
	}
	return readTar(t, bytes.NewReader(out))
}
