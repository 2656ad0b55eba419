package firecracker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// The test binary doubles as the "firecracker" binary: with fakeEnv set
// in its environment, TestMain runs the fake VMM instead of the tests,
// so the backend spawns, configures and kills a real process.
const (
	fakeEnv = "VMDRIVER_FAKE_FIRECRACKER" // set: be the fake VMM
	// fakeFault makes the fake refuse the request for this path with a
	// fault message, as Firecracker does.
	fakeFault = "VMDRIVER_FAKE_FC_FAULT"
	// fakeDie makes the fake exit with status 3 on this path's request.
	fakeDie = "VMDRIVER_FAKE_FC_DIE"
	// fakeRefuse makes the fake close every vsock connection after
	// CONNECT, as Firecracker does when nothing listens in the guest.
	fakeRefuse = "VMDRIVER_FAKE_FC_REFUSE_VSOCK"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) != "" {
		os.Exit(fakeVMMMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeVMM plays Firecracker: the API with its state machine, the serial
// console on stdout, and the hybrid vsock leading to a fake guest shell.
type fakeVMM struct {
	spec *apiSpec

	mu         sync.Mutex
	boot       bool // boot source configured
	bootArgs   string
	machine    *machineConfig
	drives     map[string]string
	nics       map[string]string
	vsock      *vsock
	configured bool // any configuration call accepted
	started    bool // InstanceStart or a snapshot load
	paused     bool
	memory     string // the fake guest's "memory": what `remember` stored
	vsockLn    net.Listener
	ctx        context.Context
	cancel     context.CancelFunc
	exitCode   chan int
}

// fakeState is the fake's snapshot state file.
type fakeState struct {
	Machine machineConfig     `json:"machine"`
	Drives  map[string]string `json:"drives"`
	NICs    map[string]string `json:"nics"`
	Vsock   vsock             `json:"vsock"`
}

func fakeVMMMain(args []string) int {
	if len(args) != 2 || args[0] != "--api-sock" {
		fmt.Fprintf(os.Stderr, "fake firecracker: usage: --api-sock PATH, got %q\n", args)
		return 2
	}
	dir := os.Getenv("VMDRIVER_SPECS")
	if dir == "" {
		dir = defaultSpecs
	}
	f, err := os.Open(dir + "/firecracker.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake firecracker:", err)
		return 2
	}
	spec, err := parseSpec(bufio.NewScanner(f))
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake firecracker:", err)
		return 2
	}
	ln, err := net.Listen("unix", args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake firecracker:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &fakeVMM{spec: spec, drives: map[string]string{}, nics: map[string]string{}, ctx: ctx, cancel: cancel, exitCode: make(chan int, 1)}
	srv := &http.Server{Handler: v, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	fmt.Fprintln(os.Stderr, "fake firecracker: API on", args[1])
	code := 0
	select {
	case <-sigs:
		fmt.Fprintln(os.Stderr, "fake firecracker: SIGTERM")
	case code = <-v.exitCode:
	}
	cancel()
	srv.Close()
	os.Remove(args[1])
	v.mu.Lock()
	if v.vsockLn != nil {
		v.vsockLn.Close()
	}
	v.mu.Unlock()
	return code
}

// exit ends the fake VMM with code.
func (v *fakeVMM) exit(code int) {
	select {
	case v.exitCode <- code:
	default:
	}
}

func (v *fakeVMM) fault(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "fake firecracker: refused:", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
}

func (v *fakeVMM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tmpl, bodyDef, err := v.spec.match(r.Method, r.URL.Path)
	if err != nil {
		v.fault(w, http.StatusBadRequest, "%v", err)
		return
	}
	var body map[string]any
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if bodyDef != "" {
		var raw any
		if err := json.Unmarshal(data, &raw); err != nil {
			v.fault(w, http.StatusBadRequest, "body of %s %s: %v", r.Method, r.URL.Path, err)
			return
		}
		if err := v.spec.check(bodyDef, raw); err != nil {
			v.fault(w, http.StatusBadRequest, "body of %s %s: %v", r.Method, r.URL.Path, err)
			return
		}
		body = raw.(map[string]any)
	} else if len(data) > 0 {
		v.fault(w, http.StatusBadRequest, "%s %s takes no body", r.Method, r.URL.Path)
		return
	}
	if r.URL.Path == os.Getenv(fakeDie) {
		fmt.Fprintln(os.Stderr, "fake firecracker: dying as asked on", r.URL.Path)
		os.Exit(3)
	}
	if r.URL.Path == os.Getenv(fakeFault) {
		v.fault(w, http.StatusBadRequest, "fake fault on %s", r.URL.Path)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	str := func(k string) string { s, _ := body[k].(string); return s }
	id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	preBoot := func() bool {
		if v.started {
			v.fault(w, http.StatusBadRequest, "the requested operation is not supported after starting the microVM")
			return false
		}
		v.configured = true
		return true
	}
	switch r.Method + " " + tmpl {
	case "GET /version":
		json.NewEncoder(w).Encode(map[string]string{"firecracker_version": "1.17.0-dev"})
		return
	case "PUT /boot-source":
		if !preBoot() {
			return
		}
		v.boot = true
		v.bootArgs = str("boot_args")
	case "PUT /machine-config":
		if !preBoot() {
			return
		}
		v.machine = &machineConfig{VCPUCount: int(body["vcpu_count"].(float64)), MemSizeMiB: int(body["mem_size_mib"].(float64))}
	case "PUT /drives/{drive_id}":
		if !preBoot() {
			return
		}
		if str("drive_id") != id {
			v.fault(w, http.StatusBadRequest, "drive id %s in the body, %s in the path", str("drive_id"), id)
			return
		}
		if _, err := os.Stat(str("path_on_host")); err != nil {
			v.fault(w, http.StatusBadRequest, "drive %s: %v", id, err)
			return
		}
		v.drives[id] = str("path_on_host")
	case "PATCH /drives/{drive_id}":
		if !v.started {
			v.fault(w, http.StatusBadRequest, "the requested operation is not supported before starting the microVM")
			return
		}
		if _, ok := v.drives[id]; !ok {
			v.fault(w, http.StatusBadRequest, "no drive %s", id)
			return
		}
		if _, err := os.Stat(str("path_on_host")); err != nil {
			v.fault(w, http.StatusBadRequest, "drive %s: %v", id, err)
			return
		}
		v.drives[id] = str("path_on_host")
	case "PUT /network-interfaces/{iface_id}":
		if !preBoot() {
			return
		}
		v.nics[id] = str("host_dev_name")
	case "PUT /vsock":
		if !preBoot() {
			return
		}
		v.vsock = &vsock{GuestCID: int(body["guest_cid"].(float64)), UDSPath: str("uds_path")}
	case "PUT /actions":
		switch str("action_type") {
		case "InstanceStart":
			if v.started || !v.boot || v.machine == nil {
				v.fault(w, http.StatusBadRequest, "cannot start: started %v, boot source %v, machine config %v", v.started, v.boot, v.machine != nil)
				return
			}
			if err := v.startGuest(); err != nil {
				v.fault(w, http.StatusInternalServerError, "%v", err)
				return
			}
			fmt.Println("fake guest: booting")
		case "SendCtrlAltDel":
			if !v.started || v.paused {
				v.fault(w, http.StatusBadRequest, "the microVM is not running")
				return
			}
			fmt.Println("fake guest: ctrl-alt-del, powering off")
			go func() { time.Sleep(50 * time.Millisecond); v.exit(0) }()
		default:
			v.fault(w, http.StatusBadRequest, "unexpected action %s", str("action_type"))
			return
		}
	case "PATCH /vm":
		if !v.started {
			v.fault(w, http.StatusBadRequest, "the microVM is not started")
			return
		}
		v.paused = str("state") == "Paused"
	case "PUT /snapshot/create":
		if !v.paused {
			v.fault(w, http.StatusBadRequest, "the microVM must be paused to create a snapshot")
			return
		}
		st := fakeState{Machine: *v.machine, Drives: v.drives, NICs: v.nics, Vsock: *v.vsock}
		data, _ := json.Marshal(st)
		if err := os.WriteFile(str("snapshot_path"), data, 0o600); err != nil {
			v.fault(w, http.StatusBadRequest, "%v", err)
			return
		}
		if err := os.WriteFile(str("mem_file_path"), []byte(v.memory), 0o600); err != nil {
			v.fault(w, http.StatusBadRequest, "%v", err)
			return
		}
	case "PUT /snapshot/load":
		if v.configured || v.started {
			v.fault(w, http.StatusBadRequest, "loading a snapshot is allowed only before any configuration")
			return
		}
		var st fakeState
		data, err := os.ReadFile(str("snapshot_path"))
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		mem, merr := os.ReadFile(str("mem_file_path"))
		if err != nil || merr != nil {
			v.fault(w, http.StatusBadRequest, "loading the snapshot: %v %v", err, merr)
			return
		}
		for id, p := range st.Drives {
			if _, err := os.Stat(p); err != nil {
				v.fault(w, http.StatusBadRequest, "drive %s: %v", id, err)
				return
			}
		}
		v.machine, v.drives, v.nics, v.vsock = &st.Machine, st.Drives, st.NICs, &st.Vsock
		if o, ok := body["vsock_override"].(map[string]any); ok {
			v.vsock.UDSPath = o["uds_path"].(string)
		}
		if list, ok := body["network_overrides"].([]any); ok {
			for _, o := range list {
				o := o.(map[string]any)
				v.nics[o["iface_id"].(string)] = o["host_dev_name"].(string)
			}
		}
		v.memory = string(mem)
		if err := v.startGuest(); err != nil {
			v.fault(w, http.StatusInternalServerError, "%v", err)
			return
		}
		v.paused = body["resume_vm"] != true
	default:
		v.fault(w, http.StatusBadRequest, "the fake does not serve %s %s", r.Method, tmpl)
		return
	}
	fmt.Fprintf(os.Stderr, "fake firecracker: %s %s ok\n", r.Method, r.URL.Path)
	w.WriteHeader(http.StatusNoContent)
}

// startGuest opens the hybrid vsock socket; called with mu held.
func (v *fakeVMM) startGuest() error {
	if v.vsock == nil {
		return fmt.Errorf("no vsock configured")
	}
	ln, err := net.Listen("unix", v.vsock.UDSPath)
	if err != nil {
		return err
	}
	v.vsockLn = ln
	v.started = true
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go v.serveVsock(conn)
		}
	}()
	return nil
}

// serveVsock answers one host connection as Firecracker's hybrid vsock
// does and hands it to the fake guest's shell.
func (v *fakeVMM) serveVsock(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := conn.Read(b); err != nil {
			conn.Close()
			return
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	conn.SetReadDeadline(time.Time{})
	port, err := strconv.Atoi(strings.TrimPrefix(string(line), "CONNECT "))
	if err != nil || port != BackdoorPort || os.Getenv(fakeRefuse) != "" {
		fmt.Fprintf(os.Stderr, "fake firecracker: vsock %q: nothing listens\n", line)
		conn.Close()
		return
	}
	fmt.Fprintf(conn, "OK 1073741824\n")
	// Each connection is a fresh shell (socat ...,fork), banner first.
	backdoor.ServeGuest(v.ctx, conn, v.guestCommand, backdoor.FakeGuestOptions{
		Raw: func(text string) {
			if strings.HasPrefix(text, "poweroff") {
				fmt.Println("fake guest: power off")
				v.exit(0)
			}
		},
	})
}

// guestCommand is the fake guest's shell: `remember X` stores X in its
// memory (which snapshots save), `recall` prints it, `fail N` exits
// with N, poweroff ends the VMM; anything else prints itself.
func (v *fakeVMM) guestCommand(ctx context.Context, req backdoor.GuestRequest) backdoor.GuestReply {
	cmd := req.Command
	switch {
	case strings.HasPrefix(cmd, "remember "):
		v.mu.Lock()
		v.memory = strings.TrimPrefix(cmd, "remember ")
		v.mu.Unlock()
		return backdoor.GuestReply{}
	case cmd == "recall":
		v.mu.Lock()
		defer v.mu.Unlock()
		return backdoor.GuestReply{Output: []byte(v.memory + "\n")}
	case cmd == "cat /proc/cmdline":
		v.mu.Lock()
		defer v.mu.Unlock()
		return backdoor.GuestReply{Output: []byte(v.bootArgs + "\n")}
	case cmd == "nics":
		v.mu.Lock()
		defer v.mu.Unlock()
		return backdoor.GuestReply{Output: []byte(fmt.Sprint(v.nics) + "\n")}
	case cmd == "drives":
		v.mu.Lock()
		defer v.mu.Unlock()
		abs := map[string]string{}
		for id, p := range v.drives {
			abs[id], _ = filepath.Abs(p) // as the VMM opens it: from its working directory
		}
		return backdoor.GuestReply{Output: []byte(fmt.Sprint(abs) + "\n")}
	case strings.HasPrefix(cmd, "fail "):
		n, _ := strconv.Atoi(strings.TrimPrefix(cmd, "fail "))
		return backdoor.GuestReply{Status: n}
	case strings.HasPrefix(cmd, "poweroff"):
		fmt.Println("fake guest: power off")
		go func() { time.Sleep(50 * time.Millisecond); v.exit(0) }()
		return backdoor.GuestReply{}
	}
	return backdoor.GuestReply{Output: []byte("ran: " + cmd + "\n")}
}
