package xwd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"testing"
)

// encode writes an XWD file the way xwd(1) does: a big-endian header
// and colour map, pixels in the given byte order.
func encode(t *testing.T, w, h, bpp int, msb bool, masks [3]uint32, cmap map[uint32]color.RGBA, pix func(x, y int) uint32) []byte {
	t.Helper()
	name := []byte("xwdump\x00")
	stride := (w*bpp/8 + 3) &^ 3
	var hdr [headerWords]uint32
	hdr[hHeaderSize] = uint32(4*headerWords + len(name))
	hdr[hFileVersion] = fileVersion
	hdr[hPixmapFormat] = zPixmap
	hdr[hPixmapDepth] = 24
	hdr[hWidth], hdr[hHeight] = uint32(w), uint32(h)
	if msb {
		hdr[hByteOrder] = msbFirst
	}
	hdr[hBitsPerPixel] = uint32(bpp)
	hdr[hBytesPerLine] = uint32(stride)
	hdr[hVisualClass] = 4
	hdr[hRedMask], hdr[hGreenMask], hdr[hBlueMask] = masks[0], masks[1], masks[2]
	hdr[hNColors] = uint32(len(cmap))
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, hdr)
	b.Write(name)
	for p, c := range cmap {
		binary.Write(&b, binary.BigEndian, struct {
			Pixel            uint32
			Red, Green, Blue uint16
			Flags, Pad       uint8
		}{p, uint16(c.R) * 0x101, uint16(c.G) * 0x101, uint16(c.B) * 0x101, 7, 0})
	}
	for y := range h {
		line := make([]byte, stride)
		for x := range w {
			v := pix(x, y)
			n := bpp / 8
			for i := range n {
				shift := 8 * i
				if msb {
					shift = 8 * (n - 1 - i)
				}
				line[x*n+i] = byte(v >> shift)
			}
		}
		b.Write(line)
	}
	return b.Bytes()
}

func TestDecode(t *testing.T) {
	rgb := [3]uint32{0xff0000, 0x00ff00, 0x0000ff}
	tests := []struct {
		name  string
		bpp   int
		msb   bool
		masks [3]uint32
		cmap  map[uint32]color.RGBA
		pix   func(x, y int) uint32
		want  func(x, y int) color.RGBA
	}{
		{"32 bits, LSB first", 32, false, rgb, nil,
			func(x, y int) uint32 { return uint32(x)<<16 | uint32(y)<<8 | 0x7f },
			func(x, y int) color.RGBA { return color.RGBA{uint8(x), uint8(y), 0x7f, 0xff} }},
		{"24 bits, MSB first", 24, true, rgb, nil,
			func(x, y int) uint32 { return 0xff0000 | uint32(x+y) },
			func(x, y int) color.RGBA { return color.RGBA{0xff, 0, uint8(x + y), 0xff} }},
		{"16 bits 565", 16, false, [3]uint32{0xf800, 0x07e0, 0x001f}, nil,
			func(x, y int) uint32 { return 0xf800 | uint32(x%2)*0x001f },
			func(x, y int) color.RGBA { return color.RGBA{0xff, 0, uint8(x%2) * 0xff, 0xff} }},
		{"8 bits through the colour map", 8, false, [3]uint32{}, map[uint32]color.RGBA{0: {0, 0, 0, 0xff}, 1: {0xff, 0xff, 0xff, 0xff}},
			func(x, y int) uint32 { return uint32((x + y) % 2) },
			func(x, y int) color.RGBA {
				return color.RGBA{uint8((x + y) % 2 * 0xff), uint8((x + y) % 2 * 0xff), uint8((x + y) % 2 * 0xff), 0xff}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const w, h = 5, 3
			img, err := Decode(bytes.NewReader(encode(t, w, h, tt.bpp, tt.msb, tt.masks, tt.cmap, tt.pix)))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Fatalf("bounds %v, want %dx%d", b, w, h)
			}
			for y := range h {
				for x := range w {
					if got, want := img.RGBAAt(x, y), tt.want(x, y); got != want {
						t.Errorf("pixel (%d,%d) = %v, want %v", x, y, got, want)
					}
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good := encode(t, 4, 2, 32, false, [3]uint32{0xff0000, 0xff00, 0xff}, nil, func(x, y int) uint32 { return 0 })
	set := func(word int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[4*word:], v)
		return b
	}
	for _, tt := range []struct {
		name   string
		data   []byte
		format bool // wraps ErrFormat
	}{
		{"empty", nil, false},
		{"version", set(hFileVersion, 6), true},
		{"XY pixmap", set(hPixmapFormat, 1), true},
		{"huge", set(hWidth, 1<<20), true},
		{"bits per pixel", set(hBitsPerPixel, 12), true},
		{"short lines", set(hBytesPerLine, 8), true},
		{"no masks", set(hRedMask, 0), true},
		{"truncated pixels", good[:len(good)-1], false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tt.data))
			if err == nil {
				t.Fatal("Decode succeeded")
			}
			if errors.Is(err, ErrFormat) != tt.format {
				t.Fatalf("err = %v; wraps ErrFormat: %v, want %v", err, errors.Is(err, ErrFormat), tt.format)
			}
		})
	}
}
