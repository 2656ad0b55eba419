package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/images"
)

// imageCache makes a cache with an image used 3 days ago (3 MiB), a
// package file used 2 hours ago (1 MiB) and an image used a minute ago
// (1 MiB), and returns its directory.
func imageCache(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, e := range []struct {
		rel, data, stamp string
		size             int
		age              time.Duration
	}{
		{rel: "images/minimal-old", data: "vmlinux", stamp: "last-used", size: 3 << 20, age: 3 * 24 * time.Hour},
		{rel: "debs", data: "bash_5.2_amd64.deb", size: 1 << 20, age: 2 * time.Hour},
		{rel: "images/systemd-new", data: "root.img", stamp: "last-used", size: 1 << 20, age: time.Minute},
	} {
		d := filepath.Join(dir, e.rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-e.age)
		for _, f := range []string{e.data, e.stamp} {
			if f == "" {
				continue
			}
			p := filepath.Join(d, f)
			data := make([]byte, map[bool]int{true: e.size}[f == e.data])
			rand.Read(data) // incompressible: its size on disk is its length
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestImageList(t *testing.T) {
	dir := imageCache(t)
	code, out, stderr := vmdriver(t, "image", "list", "--cache", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"SECTION", "NAME", "SIZE", "LAST USED"},
		{"images", "minimal-old", "3.0 MiB", "3 days ago"},
		{"debs", "bash_5.2_amd64.deb", "1.0 MiB", "2 hours ago"},
		{"images", "systemd-new", "1.0 MiB", "1 minute ago"},
		{"total 5.0 MiB in 3 entries under " + dir},
	}
	if len(lines) != len(want) {
		t.Fatalf("list printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, cols := range want {
		for _, c := range cols {
			if !strings.Contains(lines[i], c) {
				t.Errorf("line %d %q lacks %q", i, lines[i], c)
			}
		}
	}

	code, out, _ = vmdriver(t, "image", "list", "--cache", filepath.Join(dir, "none"))
	if code != exitOK || !strings.Contains(out, "total 0 B in 0 entries") {
		t.Errorf("empty cache: exit %d\n%s", code, out)
	}
}

func TestImagePrune(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  string // VMDRIVER_CACHE_CAP
		out  []string
		gone []string // relative to the cache
	}{
		{"by age", []string{"--older-than", "1d"}, "",
			[]string{"removed images/minimal-old (3.0 MiB, last used 3 days ago)\nfreed 3.0 MiB\n"},
			[]string{"images/minimal-old"}},
		{"by age in hours", []string{"--older-than", "90m"}, "",
			[]string{"removed images/minimal-old", "removed debs/bash_5.2_amd64.deb", "freed 4.0 MiB"},
			[]string{"images/minimal-old", "debs/bash_5.2_amd64.deb"}},
		{"dry run", []string{"--older-than", "1d", "--dry-run"}, "",
			[]string{"would remove images/minimal-old (3.0 MiB, last used 3 days ago)\nwould free 3.0 MiB\n"}, nil},
		{"by size, least recently used first", []string{"--max-size", "2.5M"}, "",
			[]string{"removed images/minimal-old", "freed 3.0 MiB"}, []string{"images/minimal-old"}},
		{"recent images stay", []string{"--max-size", "1K"}, "",
			[]string{"freed 4.0 MiB"}, []string{"images/minimal-old", "debs/bash_5.2_amd64.deb"}},
		{"--all takes recent ones too", []string{"--max-size", "1K", "--all"}, "",
			[]string{"removed images/systemd-new", "freed 5.0 MiB"},
			[]string{"images/minimal-old", "debs/bash_5.2_amd64.deb", "images/systemd-new"}},
		{"default cap", nil, "", []string{"freed 0.0 MiB"}, nil},
		{"cap from the environment", nil, "2.5M", []string{"freed 3.0 MiB"}, []string{"images/minimal-old"}},
		{"cap off", nil, "off", []string{"freed 0.0 MiB"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(images.CacheCapEnv, tt.env)
			dir := imageCache(t)
			code, out, stderr := vmdriver(t, append([]string{"image", "prune", "--cache", dir}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tt.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, rel := range []string{"images/minimal-old", "debs/bash_5.2_amd64.deb", "images/systemd-new"} {
				wantGone := false
				for _, g := range tt.gone {
					wantGone = wantGone || g == rel
				}
				if exists(filepath.Join(dir, rel)) == wantGone {
					t.Errorf("%s gone = %v, want %v", rel, !wantGone, wantGone)
				}
			}
		})
	}
}

func TestImageUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		env  string
		want []string // all in stderr
	}{
		{"unknown subcommand", []string{"image", "shrink"}, "", []string{`"shrink"`, "image prune"}},
		{"no subcommand", []string{"image"}, "", []string{"image list"}},
		{"bad age", []string{"image", "prune", "--older-than", "soon"}, "", []string{`"soon"`, "7d"}},
		{"negative age", []string{"image", "prune", "--older-than", "-2d"}, "", []string{`"-2d"`, "7d"}},
		{"bad size", []string{"image", "prune", "--max-size", "lots"}, "", []string{`"lots"`, "2G"}},
		{"zero size", []string{"image", "prune", "--max-size", "0"}, "", []string{`"0"`, "positive", "2G"}},
		{"unknown flag", []string{"image", "prune", "--frob"}, "", []string{"-frob"}},
		{"prune argument", []string{"image", "prune", "--cache", dir, "old"}, "", []string{`"old"`}},
		{"list argument", []string{"image", "list", "--cache", dir, "extra"}, "", []string{`"extra"`}},
		{"bad cap", []string{"image", "prune", "--cache", dir}, "huge", []string{images.CacheCapEnv, `"huge"`, "4G"}},
		{"quiet and verbose", []string{"image", "build", "--out", dir, "-q", "-v", "m"}, "", []string{"-q and -v"}},
		{"unknown kind", []string{"image", "build", "--kind", "nixos", "--out", dir, "m"}, "", []string{`"nixos"`, "minimal, systemd or desktop"}},
		{"packages on minimal", []string{"image", "build", "--packages", "jq", "--out", dir, "m"}, "", []string{"(jq)", "--kind systemd or desktop"}},
		{"bad package name", []string{"image", "build", "--kind", "desktop", "--packages", "jq, Tree", "--out", dir, "m"}, "", []string{`"Tree" is not a Debian package name`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(images.CacheCapEnv, tt.env)
			code, _, stderr := vmdriver(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "1.5d": 36 * time.Hour, "2w": 14 * 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute,
		"": 0, "soon": 0, "d": 0, "0": 0, "0d": 0, "-1h": 0, "1e300d": 0, "NaNd": 0, "7 d": 0,
	} {
		got, err := parseAge(in)
		if want == 0 {
			if err == nil || !strings.Contains(err.Error(), "7d") {
				t.Errorf("parseAge(%q) = %v, %v; want an error with an example", in, got, err)
			}
		} else if err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", time.Minute: "1 minute ago", 59 * time.Minute: "59 minutes ago",
		time.Hour: "1 hour ago", 47 * time.Hour: "47 hours ago", 3 * 24 * time.Hour: "3 days ago",
		40 * 24 * time.Hour: "2026-01-29",
	} {
		if got := ago(now.Add(-d), now); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestProgress: build steps are printed on a terminal or with -v, and
// not at all into a log file or with -q.
func TestProgress(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	for _, tt := range []struct {
		name           string
		w              io.Writer
		verbose, quiet bool
		on             bool
	}{
		{"buffer", &buf, false, false, false},
		{"file", f, false, false, false},
		{"file with -v", f, true, false, true},
		{"-q", &buf, false, true, false},
	} {
		if logf := progress(tt.w, tt.verbose, tt.quiet); (logf != nil) != tt.on {
			t.Errorf("%s: printing = %v, want %v", tt.name, logf != nil, tt.on)
		}
	}
	progress(&buf, true, false)("images: debootstrap done in %.1fs\n", 41.23)
	if got := buf.String(); got != "images: debootstrap done in 41.2s\n" {
		t.Errorf("line %q", got)
	}
}
