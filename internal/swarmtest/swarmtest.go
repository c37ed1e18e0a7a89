// Package swarmtest is the test harness for sdhub's dockerswarm discovery: it
// connects to the local Docker engine (which must be a swarm manager), builds
// a tiny image FROM scratch around a static Go test program, and creates,
// scales, updates and removes services and networks under a name prefix that
// is unique per Engine, removing them all when the test ends.
//
// There is no image registry: the image only exists on the local engine, so
// services are created with --no-resolve-image.
package swarmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/sdhub/sdhub/internal/testenv"
)

const (
	// Image is the tag of the test image on the local engine.
	Image = "sdhub-swarmtest:latest"
	// LabelRun is set on every service and network a test creates; its value
	// is the Engine's prefix. `docker service ls --filter label=sdhub.test.run`
	// finds leftovers of crashed runs.
	LabelRun = "sdhub.test.run"
	// cmdTimeout bounds every docker CLI call.
	cmdTimeout = 2 * time.Minute
)

// Engine is a connection to the local swarm manager for one test.
type Engine struct {
	// Client talks to the engine with API version negotiation.
	Client *client.Client
	// Host is the engine address (DOCKER_HOST or the default unix socket).
	Host string
	// Prefix starts the name of everything this Engine creates.
	Prefix string
	// NodeID is the ID of the engine's own swarm node.
	NodeID string

	mu       sync.Mutex
	services []string
	networks []string
}

// Host returns the engine address the tests use: $DOCKER_HOST, or the
// platform default (unix:///var/run/docker.sock).
func Host() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return client.DefaultDockerHost
}

// New connects to the engine, checks it is a swarm manager, builds the test
// image (once per process) and registers the cleanup of everything the
// Engine creates. Without an engine the test is skipped, or fails when
// SDHUB_REQUIRE_INTEGRATION=1.
func New(t testing.TB) *Engine {
	t.Helper()
	host := Host()
	_, lookErr := exec.LookPath("docker")
	testenv.Require(t, "docker CLI", lookErr == nil, "not in PATH; run scripts/deps/docker.sh")
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client for %q: %v", host, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := cli.Info(ctx)
	why := "run scripts/deps/docker.sh"
	if err != nil {
		why = fmt.Sprintf("%v; %s", err, why)
	}
	testenv.Require(t, "docker engine at "+host, err == nil, why)
	testenv.Require(t, "docker swarm manager", info.Swarm.ControlAvailable,
		fmt.Sprintf("engine at %s is not a swarm manager (state %q); run scripts/deps/docker.sh", host, info.Swarm.LocalNodeState))
	if err := buildImage(); err != nil {
		t.Fatalf("build test image: %v", err)
	}
	e := &Engine{Client: cli, Host: host, Prefix: "sdhubtest-" + randHex(4) + "-", NodeID: info.Swarm.NodeID}
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// buildImage compiles testprog statically and wraps it in a FROM scratch
// image with the classic builder (no BuildKit, no registry).
func buildImage() error {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sdhub-swarmtest-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "testprog"),
			"github.com/sdhub/sdhub/internal/swarmtest/testprog")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build testprog: %v: %s", err, out)
			return
		}
		df := "FROM scratch\nCOPY testprog /testprog\nENTRYPOINT [\"/testprog\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", Image, dir)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "DOCKER_HOST="+Host())
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("docker build: %v: %s", err, out)
		}
	})
	return buildErr
}

// Docker runs the docker CLI against the engine and returns its trimmed
// stdout; it fails the test on error.
func (e *Engine) Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Try runs the docker CLI like Docker but returns the error, for cleanups
// and commands that may fail.
func (e *Engine) Try(args ...string) (string, error) { return e.docker(args...) }

func (e *Engine) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.Host)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Name is the full name of a test object: the Engine's prefix plus short.
func (e *Engine) Name(short string) string { return e.Prefix + short }

// CreateNetwork creates an attachable overlay network named Name(short) with
// extra `docker network create` arguments and returns its ID.
func (e *Engine) CreateNetwork(t testing.TB, short string, args ...string) string {
	t.Helper()
	name := e.Name(short)
	all := append([]string{"network", "create", "--driver", "overlay", "--attachable",
		"--label", LabelRun + "=" + e.Prefix}, args...)
	id := e.Docker(t, append(all, name)...)
	e.mu.Lock()
	e.networks = append(e.networks, name)
	e.mu.Unlock()
	return id
}

// CreateService creates a service named Name(short) from the test image,
// detached, with extra `docker service create` arguments before the image
// and command arguments after it (e.g. "-exit", "0"). It returns the ID.
func (e *Engine) CreateService(t testing.TB, short string, args []string, cmd ...string) string {
	t.Helper()
	name := e.Name(short)
	all := []string{"service", "create", "--detach", "--no-resolve-image", "--quiet",
		"--name", name, "--label", LabelRun + "=" + e.Prefix, "--stop-grace-period", "2s"}
	all = append(all, args...)
	all = append(all, Image)
	all = append(all, cmd...)
	e.mu.Lock()
	e.services = append(e.services, name)
	e.mu.Unlock()
	return e.Docker(t, all...)
}

// Scale sets the replica count of service Name(short), detached.
func (e *Engine) Scale(t testing.TB, short string, replicas int) {
	t.Helper()
	e.Docker(t, "service", "scale", "--detach", e.Name(short)+"="+strconv.Itoa(replicas))
}

// Update runs `docker service update --detach` on Name(short) with args.
func (e *Engine) Update(t testing.TB, short string, args ...string) {
	t.Helper()
	all := append([]string{"service", "update", "--detach", "--quiet"}, args...)
	e.Docker(t, append(all, e.Name(short))...)
}

// RemoveService removes service Name(short).
func (e *Engine) RemoveService(t testing.TB, short string) {
	t.Helper()
	e.Docker(t, "service", "rm", e.Name(short))
}

// Tasks returns the tasks of service Name(short).
func (e *Engine) Tasks(ctx context.Context, short string) ([]swarm.Task, error) {
	f := filters.NewArgs(filters.Arg("service", e.Name(short)))
	return e.Client.TaskList(ctx, swarm.TaskListOptions{Filters: f})
}

// WaitRunning waits until service Name(short) has exactly n tasks whose
// state is running with a network address on every attachment, and no task
// still on its way (desired running but not running yet).
func (e *Engine) WaitRunning(t testing.TB, short string, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	for {
		tasks, err := e.Tasks(ctx, short)
		if err == nil {
			running, pending := 0, 0
			for _, tk := range tasks {
				switch {
				case tk.Status.State == swarm.TaskStateRunning && tk.DesiredState == swarm.TaskStateRunning:
					running++
				case tk.DesiredState == swarm.TaskStateRunning:
					pending++
				}
			}
			if running == n && pending == 0 {
				return
			}
			last = fmt.Sprintf("%d running, %d pending", running, pending)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("service %s: want %d running tasks within %v, last: %s", e.Name(short), n, within, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitTaskState waits until service Name(short) has at least n tasks in
// state want (e.g. complete for a program that exited).
func (e *Engine) WaitTaskState(t testing.TB, short string, want swarm.TaskState, n int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		tasks, err := e.Tasks(ctx, short)
		got := 0
		for _, tk := range tasks {
			if tk.Status.State == want {
				got++
			}
		}
		if err == nil && got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("service %s: want %d tasks %s within %v, have %d (err %v)", e.Name(short), n, want, within, got, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleanup removes the Engine's services, then its networks; a network stays
// busy until the removed services' containers are gone, so removal is
// retried for a bounded time.
func (e *Engine) cleanup(t testing.TB) {
	e.mu.Lock()
	services, networks := e.services, e.networks
	e.mu.Unlock()
	for _, s := range services {
		if out, err := e.docker("service", "rm", s); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("cleanup: docker service rm %s: %v %s", s, err, out)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range networks {
		for {
			_, err := e.docker("network", "rm", n)
			if err == nil || strings.Contains(err.Error(), "not found") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("cleanup: docker network rm %s: %v", n, err)
				break
			}
			time.Sleep(250 * time.Millisecond) // test cleanup: bounded retry while containers stop
		}
	}
}
