package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

func TestVersion(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tt := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "vmdriver (no build information)"},
		{"go install of a tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}, true,
			"vmdriver v1.2.3 go1.26.8"},
		{"built in a clean checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "1b5da1a0123456789abcdef", "vcs.time", "2026-12-06T04:00:00Z", "vcs.modified", "false")}, true,
			"vmdriver (devel) 1b5da1a01234 2026-12-06T04:00:00Z go1.26.8"},
		{"built in a changed checkout", &debug.BuildInfo{GoVersion: "go1.26.8",
			Settings: vcs("vcs.revision", "abc", "vcs.modified", "true")}, true,
			"vmdriver (devel) abc+dirty go1.26.8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := version(tt.bi, tt.ok); got != tt.want {
				t.Errorf("version = %q, want %q", got, tt.want)
			}
		})
	}
	// The real binary's line: whatever the build, it names the Go version.
	code, out, _ := vmdriver(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "vmdriver ") || !strings.Contains(out, "go1.") {
		t.Errorf("vmdriver version = %d %q", code, out)
	}
}

func TestDepsListsTheTable(t *testing.T) {
	code, out, stderr := vmdriver(t, "deps")
	for _, tool := range hosttools.All() {
		if !strings.Contains(out, tool.Name) {
			t.Errorf("deps does not list %s", tool.Name)
		}
	}
	// Exit status and MISSING rows agree with the table's own check.
	var names []string
	for _, tool := range hosttools.All() {
		if !tool.Optional {
			names = append(names, tool.Name)
		}
	}
	if err := hosttools.Need(names...); err != nil {
		if code != exitFail || !strings.Contains(out, "MISSING") || !strings.Contains(stderr, "make deps") {
			t.Errorf("with %v: deps exit %d, stderr %q", err, code, stderr)
		}
	} else if code != exitOK || strings.Contains(out, "MISSING") {
		t.Errorf("everything installed, yet deps exit %d:\n%s", code, out)
	}
}
