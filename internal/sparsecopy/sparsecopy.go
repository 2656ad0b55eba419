// Package sparsecopy copies the large, mostly empty files of machines
// (disk images, guest RAM) without writing their empty parts: a reflink
// where the file system has them, else a copy of the data between holes.
package sparsecopy

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
)

// Path is File for a source named by path.
func Path(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return File(ctx, in, dst)
}

// File copies src into a new file dst (0600; an existing dst is an
// error), sharing its blocks where the file system can (a reflink), else
// leaving its holes holes: disk images and guest RAM are mostly
// untouched. dst is removed on error; the copy stops when ctx ends.
func File(ctx context.Context, src *os.File, dst string) (err error) {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if ficlone(out, src) == nil {
		return nil
	}
	size := fi.Size()
	if err := out.Truncate(size); err != nil {
		return err
	}
	const seekData, seekHole = 3, 4
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := src.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return copyNonZero(src, out, size)
		}
		hole, err := src.Seek(data, seekHole)
		if err != nil {
			return copyNonZero(src, out, size)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(src, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyNonZero is File for files that cannot report their holes:
// it writes the chunks that are not all zero.
func copyNonZero(src, out *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := src.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		chunk := buf[:n]
		for k := 0; k < len(chunk); k += 4096 {
			page := chunk[k:min(k+4096, len(chunk))]
			if !allZero(page) {
				if _, err := out.WriteAt(page, off+int64(k)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ficlone makes dst share src's blocks (FICLONE).
func ficlone(dst, src *os.File) error {
	const ficloneIoctl = 0x40049409
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, dst.Fd(), ficloneIoctl, src.Fd())
	if errno != 0 {
		return errno
	}
	return nil
}
