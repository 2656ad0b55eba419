package xwd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"testing"
)

// dump builds an XWD file of w x h pixels with the given bits per pixel
// and byte order, pixel (x, y) = (10x, 20y, 30) in 8-8-8 masks.
func dump(w, h, bpp uint32, byteOrder uint32, name string) []byte {
	var b bytes.Buffer
	bpl := w * bpp / 8
	hdr := [headerFields]uint32{
		0: uint32(4*headerFields + len(name)), 1: 7, 2: zPixmap, 3: 24, 4: w, 5: h,
		7: byteOrder, 8: 32, 9: byteOrder, 10: 32, 11: bpp, 12: bpl, 13: trueColor,
		14: 0xff0000, 15: 0x00ff00, 16: 0x0000ff, 17: 8, 18: 256, 19: 2,
	}
	binary.Write(&b, binary.BigEndian, hdr)
	b.WriteString(name)
	b.Write(make([]byte, 2*12)) // two colormap entries
	for y := uint32(0); y < h; y++ {
		for x := uint32(0); x < w; x++ {
			v := (10*x)<<16 | (20*y)<<8 | 30
			px := make([]byte, bpp/8)
			for i := range px {
				if byteOrder == 0 {
					px[i] = byte(v >> (8 * i))
				} else {
					px[len(px)-1-i] = byte(v >> (8 * i))
				}
			}
			b.Write(px)
		}
	}
	return b.Bytes()
}

func TestDecode(t *testing.T) {
	for _, tt := range []struct {
		bpp, order uint32
	}{{32, 0}, {32, 1}, {24, 0}, {24, 1}} {
		img, err := Decode(bytes.NewReader(dump(3, 2, tt.bpp, tt.order, "root\x00")))
		if err != nil {
			t.Fatalf("bpp %d order %d: %v", tt.bpp, tt.order, err)
		}
		if b := img.Bounds(); b.Dx() != 3 || b.Dy() != 2 {
			t.Fatalf("size %v", b)
		}
		if got, want := img.At(2, 1), (color.RGBA{20, 20, 30, 255}); got != want {
			t.Errorf("bpp %d order %d: pixel (2,1) = %v, want %v", tt.bpp, tt.order, got, want)
		}
	}
}

func TestDecodeBad(t *testing.T) {
	good := dump(2, 2, 32, 0, "")
	corrupt := func(field int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[4*field:], v)
		return b
	}
	for name, data := range map[string][]byte{
		"empty":       nil,
		"version":     corrupt(1, 6),
		"XYPixmap":    corrupt(2, 1),
		"pseudocolor": corrupt(13, 3),
		"16 bpp":      corrupt(11, 16),
		"huge":        corrupt(4, 1<<20),
		"short line":  corrupt(12, 4),
		"truncated":   good[:len(good)-3],
		"no mask":     corrupt(14, 0),
	} {
		if _, err := Decode(bytes.NewReader(data)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: Decode = %v, want ErrFormat", name, err)
		}
	}
}
