package plugwire_test

// Tests of the SDK against a real plugwire host: a test plugin built from
// internal/testplugin runs under `plugwire run --config <tmp yaml>` (the Node
// host of this repository, host/dist/src/cli/main.js), payloads go in through
// `plugwire send -c <config>`, and the outcomes, effects and state come back
// through the same CLI. Skipped, saying why, when node or the built host is
// missing (build it with `npm ci && npm run build` at the repository root),
// and under -short.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	testPlugin  = "go-sdk-test"
	waitTimeout = 30 * time.Second
)

var (
	peerA = strings.Repeat("a1", 32)
	peerB = strings.Repeat("b2", 32)
)

// repo finds the node binary, the host CLI and builds the test plugin, or
// skips the test.
type repo struct {
	node, cli, plugin string
}

func setup(t *testing.T) repo {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the tests against a real plugwire host")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(wd, "..", "..") // sdk/go -> the repository root
	if env := os.Getenv("PLUGWIRE_REPO"); env != "" {
		root = env
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not in PATH: the tests against a real plugwire host need Node.js (>= 20.10) and the built host")
	}
	cli := filepath.Join(root, "host", "dist", "src", "cli", "main.js")
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("the plugwire host is not built (%s is missing): run `npm ci && npm run build` in %s, or set PLUGWIRE_REPO to a built checkout", cli, root)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not in PATH: cannot build the test plugin")
	}
	plugin := filepath.Join(t.TempDir(), "testplugin")
	build := exec.Command(goTool, "build", "-o", plugin, "./internal/testplugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin failed: %v\n%s", err, out)
	}
	return repo{node: node, cli: cli, plugin: plugin}
}

// host is one `plugwire run` process and the JSON lines of its log.
type host struct {
	t      *testing.T
	r      repo
	config string
	cmd    *exec.Cmd
	exited chan struct{}

	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{} // closed and replaced on every new line
}

// writeConfig writes the host config into dir and returns its path. extra
// holds more lines of the plugin's entry.
func writeConfig(t *testing.T, r repo, dir string, extra ...string) string {
	t.Helper()
	config := fmt.Sprintf(`dataDir: data
snapshotIntervalMs: 0
peers:
  - { nodeId: %s, name: alice, x25519: %s }
plugins:
  - name: %s
    command: %s
    capabilities: [peers, control, identity]
    config: { greeting: hello from the host config }
`, peerA, strings.Repeat("0b", 32), testPlugin, r.plugin) + strings.Join(extra, "")
	path := filepath.Join(dir, "plugwire.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startHost runs `plugwire run --config config` and waits until its admin API listens.
func startHost(t *testing.T, r repo, config string) *host {
	t.Helper()
	h := &host{t: t, r: r, config: config, exited: make(chan struct{}), changed: make(chan struct{})}
	out, in, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(r.node, r.cli, "run", "--config", config)
	h.cmd.Stdout, h.cmd.Stderr = in, in
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = in.Close()
	go h.read(out)
	go func() {
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-h.exited:
			return
		default:
		}
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL) // the host's group; plugins see stdin EOF
		<-h.exited
	})
	h.waitLog("the admin API listening", 0, func(l map[string]any) bool {
		return strings.HasPrefix(str(l["msg"]), "admin API listening")
	})
	return h
}

func (h *host) read(out *os.File) {
	defer out.Close()
	scanner := bufio.NewScanner(out)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		var line map[string]any
		if json.Unmarshal(scanner.Bytes(), &line) != nil {
			line = map[string]any{"msg": scanner.Text(), "raw": true}
		}
		if testing.Verbose() {
			h.t.Logf("host: %s", scanner.Text())
		}
		h.mu.Lock()
		h.lines = append(h.lines, line)
		close(h.changed)
		h.changed = make(chan struct{})
		h.mu.Unlock()
	}
}

// mark is the index the next log line will have.
func (h *host) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lines)
}

// waitLog waits for a log line at index from or later that matches, and
// returns it with its index.
func (h *host) waitLog(what string, from int, match func(map[string]any) bool) (map[string]any, int) {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for i := from; i < len(h.lines); i++ {
			if match(h.lines[i]) {
				line := h.lines[i]
				h.mu.Unlock()
				return line, i
			}
		}
		from = len(h.lines)
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-h.exited:
			h.t.Fatalf("the host exited while the test waited for %s", what)
		case <-deadline.C:
			h.t.Fatalf("no %s in the host's log within %v", what, waitTimeout)
		}
	}
}

// pluginEvent matches the host's log line msg about the test plugin.
func pluginEvent(msg string) func(map[string]any) bool {
	return func(l map[string]any) bool { return l["plugin"] == testPlugin && l["msg"] == msg }
}

// cli runs a plugwire admin command against this host.
func (h *host) cli(args ...string) (stdout []byte, exitCode int) {
	h.t.Helper()
	cmd := exec.Command(h.r.node, append([]string{h.r.cli, args[0], "-c", h.config}, args[1:]...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out, exit.ExitCode()
	}
	if err != nil {
		h.t.Fatalf("plugwire %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, 0
}

type effect struct {
	Type      string `json:"type"`
	Peer      string `json:"peer"`
	Dst       string `json:"dst"`
	Frame     string `json:"frame"`
	Performed bool   `json:"performed"`
	Routed    bool   `json:"routed"`
}

type outcome struct {
	Plugin  string   `json:"plugin"`
	Outcome string   `json:"outcome"`
	Error   string   `json:"error"`
	Effects []effect `json:"effects"`
}

// send dispatches one payload with `plugwire send -c` and returns its outcome.
func (h *host) send(kind, src, body string) (outcome, int) {
	h.t.Helper()
	out, code := h.cli("send", "--kind", kind, "--src", src, "--body", body, "--json")
	var o outcome
	if err := json.Unmarshal(out, &o); err != nil {
		h.t.Fatalf("plugwire send --kind %s: not JSON (exit %d): %q", kind, code, out)
	}
	return o, code
}

// reply dispatches kind and decodes the JSON frame of the SendDirect effect
// the test plugin answers with.
func (h *host) reply(kind string, src string, v any) {
	h.t.Helper()
	o, code := h.send(kind, src, "")
	if code != 0 || o.Outcome != "acked" {
		h.t.Fatalf("%s: exit %d, outcome %q (%s)", kind, code, o.Outcome, o.Error)
	}
	var direct *effect
	for i := range o.Effects {
		if o.Effects[i].Type == "sendDirect" {
			direct = &o.Effects[i]
		}
	}
	if direct == nil || direct.Peer != src || !direct.Performed {
		h.t.Fatalf("%s: want a performed sendDirect effect to %s, got %+v", kind, src, o.Effects)
	}
	frame, err := hex.DecodeString(direct.Frame)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := json.Unmarshal(frame, v); err != nil {
		h.t.Fatalf("%s: frame %q: %v", kind, frame, err)
	}
}

type state struct {
	Counts   map[string]uint64 `json:"counts"`
	Greeting string            `json:"greeting"`
	DataDir  bool              `json:"dataDir"`
	Seq      uint64            `json:"seq"`
}

func (h *host) state() state {
	h.t.Helper()
	var s state
	h.reply("t.state", peerA, &s)
	return s
}

func (h *host) hit(src string, n int) {
	h.t.Helper()
	for range n {
		if o, code := h.send("t.hit", src, ""); code != 0 || o.Outcome != "acked" || len(o.Effects) != 0 {
			h.t.Fatalf("t.hit: exit %d, %+v", code, o)
		}
	}
}

// pid is the test plugin's pid as `plugwire status` reports it.
func (h *host) pid() int {
	h.t.Helper()
	out, code := h.cli("status", "--json")
	var plugins []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Pid   int    `json:"pid"`
	}
	if err := json.Unmarshal(out, &plugins); err != nil || code != 0 {
		h.t.Fatalf("plugwire status --json: exit %d, %q", code, out)
	}
	for _, p := range plugins {
		if p.Name == testPlugin && p.State == "ready" && p.Pid > 0 {
			return p.Pid
		}
	}
	h.t.Fatalf("plugwire status: %s is not ready with a pid: %s", testPlugin, out)
	return 0
}

// stop sends SIGTERM to the host and waits for it to exit with 0.
func (h *host) stop() {
	h.t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(waitTimeout):
		h.t.Fatalf("the host did not exit within %v of SIGTERM", waitTimeout)
	}
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		h.t.Fatalf("the host exited with %d after SIGTERM", code)
	}
}

// waitGone waits, bounded, until pid no longer exists (it is not our child,
// so there is no exit event to wait for).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	t.Fatalf("process %d is still alive", pid)
}

func str(v any) string { s, _ := v.(string); return s }

func TestPayloadsEffectsAndHostPortsThroughARealHost(t *testing.T) {
	t.Parallel()
	r := setup(t)
	dir := t.TempDir()
	h := startHost(t, r, writeConfig(t, r, dir))

	// Start saw the config and the data dir; seq 1 is this t.state.
	s := h.state()
	if want := (state{Counts: map[string]uint64{}, Greeting: "hello from the host config", DataDir: true, Seq: 1}); !reflect.DeepEqual(s, want) {
		t.Fatalf("state after start: got %+v, want %+v", s, want)
	}
	h.hit(peerA, 3)
	h.hit(peerB, 2)
	if got, want := h.state().Counts, map[string]uint64{peerA: 3, peerB: 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts: got %v, want %v", got, want)
	}

	// A handler error is the payload's outcome (exit 1), with its message, and drops its effects.
	o, code := h.send("t.fail", peerA, "refused on purpose")
	if code != 1 || o.Outcome != "handler_error" || !strings.HasSuffix(o.Error, ": refused on purpose") || len(o.Effects) != 0 {
		t.Fatalf("t.fail: exit %d, %+v", code, o)
	}

	// The host ports: lookups know alice (from the config's peers) and not B.
	var who struct {
		Name     string `json:"name"`
		Known    bool   `json:"known"`
		KeyKnown bool   `json:"keyKnown"`
	}
	h.reply("t.who", peerA, &who)
	if who.Name != "alice" || !who.Known || !who.KeyKnown {
		t.Fatalf("t.who from alice: %+v", who)
	}
	h.reply("t.who", peerB, &who)
	if who.Name != "" || who.Known || who.KeyKnown {
		t.Fatalf("t.who from an unknown peer: %+v", who)
	}
	// SendRouted inside a handler: the host reports the route and shows the send among the effects.
	o, code = h.send("t.route", peerA, "via the routing table")
	if code != 0 || len(o.Effects) != 2 || o.Effects[0].Type != "sendRouted" || o.Effects[0].Dst != peerA || !o.Effects[0].Routed ||
		o.Effects[0].Frame != hex.EncodeToString([]byte("via the routing table")) {
		t.Fatalf("t.route: exit %d, %+v", code, o)
	}
	var routed struct {
		Routed bool `json:"routed"`
	}
	h.reply("t.route", peerA, &routed)
	if !routed.Routed {
		t.Fatal("SendRouted reported no route to a known peer")
	}
	var seed struct {
		SeedBytes int `json:"seedBytes"`
	}
	h.reply("t.seed", peerA, &seed)
	if seed.SeedBytes != 32 {
		t.Fatalf("SigningSeed: %d bytes, want 32", seed.SeedBytes)
	}

	// Stopping the host runs the Shutdown hook after the last item, then the plugin exits.
	pid := h.pid()
	h.stop()
	waitGone(t, pid)
	data, err := os.ReadFile(filepath.Join(dir, "data", "plugins", testPlugin, "shutdown.json"))
	if err != nil {
		t.Fatalf("the Shutdown hook did not write its file: %v", err)
	}
	var atShutdown map[string]uint64
	if err := json.Unmarshal(data, &atShutdown); err != nil || !reflect.DeepEqual(atShutdown, map[string]uint64{peerA: 3, peerB: 2}) {
		t.Fatalf("counts at shutdown: %s (%v)", data, err)
	}
}

func TestExactStateAfterKill9AndAfterAHostRestart(t *testing.T) {
	t.Parallel()
	r := setup(t)
	dir := t.TempDir()
	config := writeConfig(t, r, dir)
	h := startHost(t, r, config)

	// seqs 1-5: 3 hits from A, 2 from B, then a snapshot that covers them.
	h.hit(peerA, 3)
	h.hit(peerB, 2)
	if out, code := h.cli("snapshot", testPlugin); code != 0 || !strings.Contains(string(out), "saved at seq 5") {
		t.Fatalf("plugwire snapshot: exit %d, %s", code, out)
	}
	// seqs 6-8: after the snapshot; the host keeps them for replay.
	h.hit(peerA, 2)
	h.hit(peerB, 1)

	// kill -9: the next launch restores the snapshot at seq 5 and gets 6-8 replayed.
	pid := h.pid()
	from := h.mark()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restored, at := h.waitLog("the snapshot restored", from, pluginEvent("snapshot restored"))
	if restored["appliedSeq"] != float64(5) {
		t.Fatalf("restored appliedSeq %v, want 5: %v", restored["appliedSeq"], restored)
	}
	h.waitLog("the plugin ready again", at, pluginEvent("plugin ready"))
	waitGone(t, pid)
	if again := h.pid(); again == pid {
		t.Fatalf("still pid %d after kill -9", pid)
	}
	// Exactly the counts of seqs 1-8: nothing lost, nothing counted twice.
	s := h.state()
	if want := map[string]uint64{peerA: 5, peerB: 3}; !reflect.DeepEqual(s.Counts, want) || s.Seq != 9 {
		t.Fatalf("after kill -9: counts %v at seq %d, want %v at seq 9", s.Counts, s.Seq, want)
	}
	h.hit(peerB, 1)
	h.stop() // snapshots on the way out

	// A new host restores the snapshot taken at stop into a fresh process.
	h = startHost(t, r, config)
	if s := h.state(); !reflect.DeepEqual(s.Counts, map[string]uint64{peerA: 5, peerB: 4}) {
		t.Fatalf("after a host restart: counts %v", s.Counts)
	}
	h.stop()
}

func TestTheConformanceKitPassesTheTestPlugin(t *testing.T) {
	t.Parallel()
	r := setup(t)
	cmd := exec.Command(r.node, r.cli, "check", "--json", "--", r.plugin)
	out, err := cmd.Output()
	var report struct {
		Passed  int `json:"passed"`
		Failed  int `json:"failed"`
		Skipped int `json:"skipped"`
		Checks  []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if jsonErr := json.Unmarshal(out, &report); jsonErr != nil {
		t.Fatalf("plugwire check --json: %v (%v): %q", err, jsonErr, out)
	}
	for _, c := range report.Checks {
		if c.Status != "pass" {
			t.Errorf("check %s: %s: %s", c.ID, c.Status, c.Detail)
		}
	}
	// A stateful plugin: every check applies.
	if err != nil || report.Failed != 0 || report.Skipped != 0 || report.Passed == 0 {
		t.Fatalf("plugwire check: %v; %d passed, %d failed, %d skipped", err, report.Passed, report.Failed, report.Skipped)
	}
}

func TestTheLegacyEnvTokenAndUnsupportedVersionAsAReset(t *testing.T) {
	t.Parallel()
	r := setup(t)
	dir := t.TempDir()

	// tokenVia: env, the legacy PLUGWIRE_AUTH_TOKEN instead of the token line on stdin.
	h := startHost(t, r, writeConfig(t, r, dir, "    tokenVia: env\n"))
	h.hit(peerA, 2)
	if got := h.state().Counts; !reflect.DeepEqual(got, map[string]uint64{peerA: 2}) {
		t.Fatalf("counts with tokenVia env: %v", got)
	}
	h.stop() // stores a snapshot in format version 1

	// A build that reads only version 2 cannot restore it: a reset, from the default state.
	h = startHost(t, r, writeConfig(t, r, dir, "    env: { TESTPLUGIN_SNAPSHOT_VERSION: \"2\" }\n"))
	if got := h.state().Counts; !reflect.DeepEqual(got, map[string]uint64{}) {
		t.Fatalf("counts after a snapshot of an unsupported version: %v, want none", got)
	}
	h.hit(peerB, 1)
	if got := h.state().Counts; !reflect.DeepEqual(got, map[string]uint64{peerB: 1}) {
		t.Fatalf("counts after the reset: %v", got)
	}
	h.stop()
}
