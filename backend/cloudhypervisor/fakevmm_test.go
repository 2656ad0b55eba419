package cloudhypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// The test binary plays cloud-hypervisor when fakeVMMEnv is set: TestMain
// runs fakeVMM instead of the tests. It serves the API on the
// --api-socket, checks every request against the OpenAPI description
// (converted to JSON by TestMain, path in fakeSchemaEnv), follows the
// VM's state machine, and serves the virtio console socket with a fake
// guest shell (backdoor.ServeGuest).
const (
	fakeVMMEnv    = "VMDRIVER_TEST_FAKE_CH"
	fakeSchemaEnv = "VMDRIVER_TEST_FAKE_CH_SCHEMA"
	// fakeModeEnv selects a failure: "die-on-create" (exit 3 at
	// vm.create), "reject-boot" (vm.boot answers 500), "no-console"
	// (no console socket), "no-api" (never listen), "die-after-boot"
	// (exit 4 before the guest's shell is up), "silent" (the guest never
	// prints its banner), "fail-snapshot" (vm.snapshot answers 500).
	fakeModeEnv = "VMDRIVER_TEST_FAKE_CH_MODE"
)

// loadSchema converts the OpenAPI YAML at path to JSON with python3's
// yaml module (no Go YAML dependency) and writes it to out.
func loadSchema(path, out string) error {
	py := `import json, sys, yaml
json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], "w"))`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if msg, err := exec.CommandContext(ctx, "python3", "-c", py, path, out).CombinedOutput(); err != nil {
		return fmt.Errorf("converting %s with python3's yaml module: %w: %s", path, err, msg)
	}
	return nil
}

// spec is the API description as JSON values.
type spec map[string]any

func (s spec) path(p string) map[string]any {
	paths, _ := s["paths"].(map[string]any)
	m, _ := paths[p].(map[string]any)
	return m
}

// resolve follows a "#/components/schemas/X" reference.
func (s spec) resolve(schema map[string]any) map[string]any {
	for {
		ref, ok := schema["$ref"].(string)
		if !ok {
			return schema
		}
		var cur any = map[string]any(s)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := cur.(map[string]any)
			cur = m[part]
		}
		schema, _ = cur.(map[string]any)
		if schema == nil {
			return map[string]any{}
		}
	}
}

// validate checks v against schema: types, required properties, no
// properties the schema does not name, enums, minimums, array items.
func (s spec) validate(schema map[string]any, v any, at string) error {
	schema = s.resolve(schema)
	if e, ok := schema["enum"].([]any); ok {
		found := false
		for _, x := range e {
			if fmt.Sprint(x) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", at, v, e)
		}
	}
	typ, _ := schema["type"].(string)
	if typ == "" && schema["properties"] != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, v)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q missing", at, r)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		for k, x := range obj {
			ps, ok := props[k].(map[string]any)
			if !ok {
				return fmt.Errorf("%s: property %q is not in the schema", at, k)
			}
			if err := s.validate(ps, x, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, v)
		}
		items, _ := schema["items"].(map[string]any)
		for k, x := range arr {
			if err := s.validate(items, x, fmt.Sprintf("%s[%d]", at, k)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: want a string, got %T", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %T", at, v)
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok || (typ == "integer" && f != math.Trunc(f)) {
			return fmt.Errorf("%s: want an %s, got %v", at, typ, v)
		}
		if min, ok := schema["minimum"].(float64); ok && f < min {
			return fmt.Errorf("%s: %v is below the minimum %v", at, f, min)
		}
	}
	return nil
}

// fakeVMM is the fake cloud-hypervisor process; it returns the exit
// status.
func fakeVMM(args []string) int {
	var sock string
	for k := 0; k+1 < len(args); k++ {
		if args[k] == "--api-socket" && strings.HasPrefix(args[k+1], "path=") {
			sock = strings.TrimPrefix(args[k+1], "path=")
		}
	}
	if sock == "" {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: want --api-socket path=PATH")
		return 2
	}
	data, err := os.ReadFile(os.Getenv(fakeSchemaEnv))
	var sp spec
	if err == nil {
		err = json.Unmarshal(data, &sp)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: schema:", err)
		return 2
	}
	mode := os.Getenv(fakeModeEnv)
	if mode == "no-api" {
		time.Sleep(time.Minute)
		return 0
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor:", err)
		return 1
	}
	v := &vmm{spec: sp, mode: mode, exit: make(chan int, 1), state: "None"}
	go http.Serve(l, v)
	code := <-v.exit
	fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: exiting with %d\n", code)
	return code
}

// vmm is the fake VMM's state.
type vmm struct {
	spec  spec
	mode  string
	exit  chan int
	mu    sync.Mutex
	state string         // None, Created, Running, Paused
	cfg   map[string]any // the VmConfig
	cons  net.Listener
}

func (v *vmm) quit(code int) {
	select {
	case v.exit <- code:
	default:
	}
}

func (v *vmm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint := strings.TrimPrefix(r.URL.Path, "/api/v1")
	op, _ := v.spec.path(endpoint)[strings.ToLower(r.Method)].(map[string]any)
	if op == nil {
		v.fail(w, http.StatusNotFound, "%s %s is not in the API description", r.Method, r.URL.Path)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var val any
	if rb, ok := op["requestBody"].(map[string]any); ok {
		schema, _ := rb["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
		if err := json.Unmarshal(body, &val); err != nil {
			v.fail(w, http.StatusBadRequest, "%s: body is not JSON: %v", endpoint, err)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			v.fail(w, http.StatusBadRequest, "%s: content type %q", endpoint, ct)
			return
		}
		if err := v.spec.validate(schema, val, "body"); err != nil {
			v.fail(w, http.StatusBadRequest, "%s: %v", endpoint, err)
			return
		}
	} else if len(body) > 0 {
		v.fail(w, http.StatusBadRequest, "%s takes no body, got %q", endpoint, body)
		return
	}
	obj, _ := val.(map[string]any)
	v.mu.Lock()
	defer v.mu.Unlock()
	need := func(states ...string) bool {
		for _, s := range states {
			if v.state == s {
				return true
			}
		}
		v.fail(w, http.StatusMethodNotAllowed, "%s in state %s", endpoint, v.state)
		return false
	}
	switch endpoint {
	case "/vm.create":
		if !need("None") {
			return
		}
		if v.mode == "die-on-create" {
			fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: error: cannot create the VM: boom")
			os.Exit(3)
		}
		if err := v.setConfig(obj, false); err != nil {
			v.fail(w, http.StatusBadRequest, "vm.create: %v", err)
			return
		}
		v.state = "Created"
	case "/vm.boot":
		if !need("Created") {
			return
		}
		if v.mode == "reject-boot" {
			v.fail(w, http.StatusInternalServerError, "Error booting VM: InvalidPayload")
			return
		}
		fmt.Println("fake guest: Linux booting on ttyS0")
		v.state = "Running"
		if v.mode == "die-after-boot" {
			go func() {
				time.Sleep(200 * time.Millisecond)
				fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: guest triple fault")
				os.Exit(4)
			}()
		}
	case "/vm.pause":
		if !need("Running") {
			return
		}
		v.state = "Paused"
	case "/vm.resume":
		if !need("Paused") {
			return
		}
		v.state = "Running"
	case "/vm.snapshot":
		if !need("Paused") {
			return
		}
		if v.mode == "fail-snapshot" {
			v.fail(w, http.StatusInternalServerError, "Error snapshotting VM: no space left on device")
			return
		}
		if err := v.snapshot(obj["destination_url"].(string)); err != nil {
			v.fail(w, http.StatusInternalServerError, "vm.snapshot: %v", err)
			return
		}
	case "/vm.restore":
		if !need("None") {
			return
		}
		if err := v.restore(obj["source_url"].(string)); err != nil {
			v.fail(w, http.StatusBadRequest, "vm.restore: %v", err)
			return
		}
		v.state = "Paused"
	case "/vm.power-button":
		if !need("Running") {
			return
		}
		v.quit(0)
	case "/vmm.shutdown":
		v.quit(0)
	case "/vmm.ping":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"version":"fake"}`)
		return
	default:
		v.fail(w, http.StatusNotImplemented, "%s is not implemented by the fake", endpoint)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fail answers with an error and logs it on stderr, where the backend's
// diagnostics pick it up.
func (v *vmm) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: "+msg)
	http.Error(w, msg, code)
}

// setConfig takes cfg as the VM's configuration: the disks must exist
// and the console must be a socket, which it starts serving.
func (v *vmm) setConfig(cfg map[string]any, restored bool) error {
	disks, _ := cfg["disks"].([]any)
	for _, d := range disks {
		p := d.(map[string]any)["path"].(string)
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
	}
	cons, _ := cfg["console"].(map[string]any)
	if cons["mode"] != "Socket" {
		return fmt.Errorf("console mode %v: the fake serves only Socket", cons["mode"])
	}
	v.cfg = cfg
	if v.mode == "no-console" {
		return nil
	}
	l, err := net.Listen("unix", cons["socket"].(string))
	if err != nil {
		return err
	}
	v.cons = l
	go v.serveConsole(l, restored)
	return nil
}

// serveConsole runs the fake guest shell on the first connection.
func (v *vmm) serveConsole(l net.Listener, restored bool) {
	conn, err := l.Accept()
	if err != nil {
		return
	}
	h := func(ctx context.Context, req backdoor.GuestRequest) backdoor.GuestReply {
		if req.Command == "cat /proc/cmdline" {
			payload, _ := v.cfg["payload"].(map[string]any)
			return backdoor.GuestReply{Output: []byte(fmt.Sprint(payload["cmdline"]) + "\n")}
		}
		return backdoor.GuestReply{Output: []byte("ran: " + req.Command + "\n")}
	}
	if v.mode == "die-after-boot" || v.mode == "silent" {
		io.Copy(io.Discard, conn)
		return
	}
	backdoor.ServeGuest(context.Background(), conn, h, backdoor.FakeGuestOptions{
		NoBanner: restored,
		Raw: func(text string) {
			if strings.HasPrefix(text, "poweroff") {
				v.quit(0)
			}
		},
	})
}

// fileURL returns the directory of a file:// URL.
func fileURL(u string) (string, error) {
	if !strings.HasPrefix(u, "file://") {
		return "", fmt.Errorf("%q is not a file:// URL", u)
	}
	return strings.TrimPrefix(u, "file://"), nil
}

// snapshot writes config.json, state.json and memory-ranges into the
// directory of url, as cloud-hypervisor does.
func (v *vmm) snapshot(url string) error {
	dir, err := fileURL(url)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("destination %s is not a directory", dir)
	}
	cfg, _ := json.Marshal(v.cfg)
	files := map[string][]byte{
		"config.json":   cfg,
		"state.json":    []byte(`{"fake":true}`),
		"memory-ranges": make([]byte, 4096),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// restore loads a snapshot directory into this fresh VMM.
func (v *vmm) restore(url string) error {
	dir, err := fileURL(url)
	if err != nil {
		return err
	}
	for _, name := range []string{"state.json", "memory-ranges"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return err
	}
	schema := map[string]any{"$ref": "#/components/schemas/VmConfig"}
	if err := v.spec.validate(schema, cfg, "config.json"); err != nil {
		return err
	}
	return v.setConfig(cfg, true)
}

var errNoSchema = errors.New("no API description")
