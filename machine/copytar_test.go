package machine

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTarRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	for _, f := range []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"a.txt", 0o644, "a\n"},
		{"bin/run", 0o755, "#!/bin/sh\n"},
		{"secret/key", 0o600, "k"},
	} {
		p := filepath.Join(src, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarTree(&buf, src, "tree"); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out", "tree")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := untarTree(bytes.NewReader(buf.Bytes()), "tree", dst); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"a.txt": "a\n", "bin/run": "#!/bin/sh\n", "secret/key": "k"} {
		if got, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v", p, got, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dst, "bin/run")); fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/run mode %v", fi)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "a.txt" {
		t.Errorf("link -> %q, %v", l, err)
	}

	// A single file is an archive of one entry.
	buf.Reset()
	if err := tarTree(&buf, filepath.Join(src, "a.txt"), "a.txt"); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(t.TempDir(), "a.txt")
	if err := untarTree(&buf, "a.txt", one); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(one); string(got) != "a\n" {
		t.Errorf("single file = %q", got)
	}
}

// TestUntarRefuses: the archive comes from the guest, so nothing in it
// may write outside the destination.
func TestUntarRefuses(t *testing.T) {
	archive := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			if h.Typeflag == tar.TypeReg {
				h.Size = 1
			}
			tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"outside name", archive(&tar.Header{Name: "./other/f", Typeflag: tar.TypeReg, Mode: 0o644}), "outside tree"},
		{"dot dot", archive(&tar.Header{Name: "./tree/../../f", Typeflag: tar.TypeReg, Mode: 0o644}), "outside tree"},
		{"through a link", archive(
			&tar.Header{Name: "./tree/", Typeflag: tar.TypeDir, Mode: 0o755},
			&tar.Header{Name: "./tree/l", Typeflag: tar.TypeSymlink, Linkname: "/tmp"},
			&tar.Header{Name: "./tree/l/f", Typeflag: tar.TypeReg, Mode: 0o644}), "is a symbolic link"},
		{"a device", archive(&tar.Header{Name: "./tree", Typeflag: tar.TypeChar, Mode: 0o644}), "kind not copied"},
		{"empty", archive(), "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "tree")
			err := untarTree(bytes.NewReader(tt.data), "tree", dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("untarTree = %v, want %q", err, tt.want)
			}
		})
	}
}
