// Package xwd decodes X Window Dump files, the screenshots `xwd -root`
// takes of an X display. A guest without a display device (Xvfb) has no
// screen QEMU could dump, so its picture comes from xwd inside the guest.
//
// Decode handles what X servers produce in practice: ZPixmap images with
// 8 bits per pixel through a colour map, or 16, 24 or 32 bits per pixel
// split by the visual's red, green and blue masks, in either byte order.
package xwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math/bits"
)

// Header field indexes: the header is 25 big-endian 32-bit words, then
// the window name.
const (
	hHeaderSize = iota
	hFileVersion
	hPixmapFormat
	hPixmapDepth
	hWidth
	hHeight
	hXOffset
	hByteOrder
	hBitmapUnit
	hBitmapBitOrder
	hBitmapPad
	hBitsPerPixel
	hBytesPerLine
	hVisualClass
	hRedMask
	hGreenMask
	hBlueMask
	hBitsPerRGB
	hColormapEntries
	hNColors
	headerWords = 25
)

const (
	fileVersion = 7
	zPixmap     = 2
	msbFirst    = 1
	// maxPixels bounds the image a header may announce (64 Mpixel).
	maxPixels = 1 << 26
)

// ErrFormat is wrapped by the errors for input that is not an XWD file
// Decode can read.
var ErrFormat = errors.New("xwd: unsupported or invalid file")

// Decode reads one XWD file from r.
func Decode(r io.Reader) (*image.RGBA, error) {
	var h [headerWords]uint32
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return nil, fmt.Errorf("xwd: read header: %w", err)
	}
	if h[hFileVersion] != fileVersion {
		return nil, fmt.Errorf("%w: file version %d, want %d", ErrFormat, h[hFileVersion], fileVersion)
	}
	if h[hPixmapFormat] != zPixmap {
		return nil, fmt.Errorf("%w: pixmap format %d, only ZPixmap (2)", ErrFormat, h[hPixmapFormat])
	}
	w, ht, bpp, stride := int(h[hWidth]), int(h[hHeight]), int(h[hBitsPerPixel]), int(h[hBytesPerLine])
	if w <= 0 || ht <= 0 || w*ht > maxPixels || h[hHeaderSize] < 4*headerWords || h[hNColors] > 1<<16 {
		return nil, fmt.Errorf("%w: %dx%d image, header of %d bytes, %d colours", ErrFormat, w, ht, h[hHeaderSize], h[hNColors])
	}
	if bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32 || stride < (w*bpp+7)/8 {
		return nil, fmt.Errorf("%w: %d bits per pixel in lines of %d bytes", ErrFormat, bpp, stride)
	}
	if _, err := io.CopyN(io.Discard, r, int64(h[hHeaderSize])-4*headerWords); err != nil {
		return nil, fmt.Errorf("xwd: read window name: %w", err)
	}
	cmap := map[uint32]color.RGBA{}
	for range h[hNColors] {
		var c struct {
			Pixel            uint32
			Red, Green, Blue uint16
			Flags, Pad       uint8
		}
		if err := binary.Read(r, binary.BigEndian, &c); err != nil {
			return nil, fmt.Errorf("xwd: read colour map: %w", err)
		}
		cmap[c.Pixel] = color.RGBA{uint8(c.Red >> 8), uint8(c.Green >> 8), uint8(c.Blue >> 8), 0xff}
	}
	pixel := func(v uint32) color.RGBA { return cmap[v] }
	if bpp > 8 {
		rm, gm, bm := h[hRedMask], h[hGreenMask], h[hBlueMask]
		if rm == 0 || gm == 0 || bm == 0 {
			return nil, fmt.Errorf("%w: %d bits per pixel without colour masks", ErrFormat, bpp)
		}
		pixel = func(v uint32) color.RGBA {
			return color.RGBA{channel(v, rm), channel(v, gm), channel(v, bm), 0xff}
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, w, ht))
	line := make([]byte, stride)
	for y := range ht {
		if _, err := io.ReadFull(r, line); err != nil {
			return nil, fmt.Errorf("xwd: read pixels of line %d: %w", y, err)
		}
		for x := range w {
			p := line[x*bpp/8 : (x+1)*bpp/8]
			var v uint32
			for i := range p {
				if h[hByteOrder] == msbFirst {
					v = v<<8 | uint32(p[i])
				} else {
					v |= uint32(p[i]) << (8 * i)
				}
			}
			img.SetRGBA(x, y, pixel(v))
		}
	}
	return img, nil
}

// channel extracts the colour channel mask selects from v, scaled to
// eight bits.
func channel(v, mask uint32) uint8 {
	shift := bits.TrailingZeros32(mask)
	width := bits.OnesCount32(mask)
	c := (v & mask) >> shift
	switch {
	case width == 8:
		return uint8(c)
	case width > 8:
		return uint8(c >> (width - 8))
	}
	top := uint32(1)<<width - 1
	return uint8(c * 255 / top)
}
