package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
)

// rawVM is a guest started by hand, without the driver: the baseline the
// driver's overhead is measured against. It uses the same start script and
// the same flags the driver appends.
type rawVM struct {
	cmd  *exec.Cmd
	ln   net.Listener
	conn net.Conn
	rd   *bufio.Reader
	dir  string
}

// startRaw spawns the start script and returns once the banner arrived,
// with the time from spawn to banner.
func startRaw(ctx context.Context, script string) (*rawVM, time.Duration, error) {
	dir, err := os.MkdirTemp("", "vmdb")
	if err != nil {
		return nil, 0, err
	}
	v := &rawVM{dir: dir}
	v.ln, err = net.Listen("unix", filepath.Join(dir, "shell"))
	if err != nil {
		v.close()
		return nil, 0, err
	}
	accel, _, err := qemu.New().AccelArgs() // the driver's choice, for a fair comparison
	if err != nil {
		v.close()
		return nil, 0, err
	}
	v.cmd = exec.Command(script, append([]string{
		"-qmp", "unix:" + filepath.Join(dir, "qmp") + ",server=on,wait=off",
		"-chardev", "socket,id=shell,path=" + filepath.Join(dir, "shell"),
		"-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
		"-serial", "stdio", "-no-reboot", "-nographic"}, accel...)...)
	v.cmd.Dir = dir
	v.cmd.Env = append(os.Environ(), "TMPDIR="+dir, "USE_TMPDIR=1", "SHARED_DIR="+filepath.Join(dir, "xchg"))
	v.cmd.Stdout = io.Discard // the driver reads the serial console too
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := v.cmd.Start(); err != nil {
		v.close()
		return nil, 0, err
	}
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() { c, err := v.ln.Accept(); ch <- accepted{c, err} }()
	select {
	case a := <-ch:
		if a.err != nil {
			v.close()
			return nil, 0, a.err
		}
		v.conn = a.c
	case <-ctx.Done():
		v.close()
		return nil, 0, ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok {
		v.conn.SetDeadline(dl)
	}
	v.rd = bufio.NewReaderSize(v.conn, 1<<16)
	var seen []byte
	banner := []byte("Spawning backdoor root shell...")
	for !bytes.Contains(seen, banner) {
		b, err := v.rd.ReadByte()
		if err != nil {
			v.close()
			return nil, 0, fmt.Errorf("waiting for the banner: %w", err)
		}
		seen = append(seen, b)
	}
	d := time.Since(t0)
	// The rest of the banner line.
	if _, err := v.rd.ReadString('\n'); err != nil {
		v.close()
		return nil, 0, err
	}
	return v, d, nil
}

// anchorExchange runs cmd the way the NixOS driver does for succeed():
// `bash -c` piped into `(base64 -w 0; echo)`, one line back, then a second
// round trip for ${PIPESTATUS[0]}.
func (v *rawVM) anchorExchange(cmd string) (int, []byte, error) {
	q := "'" + strings.ReplaceAll("set -euo pipefail; "+cmd, "'", `'\''`) + "'"
	if _, err := io.WriteString(v.conn, "bash -c "+q+" | (base64 -w 0; echo)\n"); err != nil {
		return 0, nil, err
	}
	line, err := v.rd.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	out, err := decodeB64(strings.TrimSpace(line))
	if err != nil {
		return 0, nil, err
	}
	if _, err := io.WriteString(v.conn, "echo ${PIPESTATUS[0]}\n"); err != nil {
		return 0, nil, err
	}
	line, err = v.rd.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	st, err := strconv.Atoi(strings.TrimSpace(line))
	return st, out, err
}

func (v *rawVM) close() {
	if v.conn != nil {
		v.conn.Close()
	}
	if v.ln != nil {
		v.ln.Close()
	}
	if v.cmd != nil && v.cmd.Process != nil {
		syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		v.cmd.Wait()
	}
	os.RemoveAll(v.dir)
}

// replayConn hands the driver's shell a connection whose banner was
// already read by hand, so the driver's own set-up after the banner can
// be timed alone.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
