package sparsecopy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const size = 64 << 20
	if err := src.Truncate(size); err != nil {
		t.Fatal(err)
	}
	islands := map[int64][]byte{0: []byte("first page"), 10 << 20: bytes.Repeat([]byte{7}, 3<<20), size - 5: []byte("tail!")}
	for off, b := range islands {
		if _, err := src.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "dst")
	if err := File(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	for off, b := range islands {
		copy(want[off:], b)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the copy differs from the original")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated > 16<<20 {
		t.Errorf("the copy of a 64 MiB file with 3 MiB of data takes %d MiB: not sparse", allocated>>20)
	}
	if err := File(context.Background(), src, dst); err == nil {
		t.Error("File overwrote an existing file")
	}
}
