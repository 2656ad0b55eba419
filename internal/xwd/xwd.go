// Package xwd decodes X Window Dump files (what `xwd -root` writes) of
// TrueColor ZPixmap screens, the kind every X server a test guest runs
// (Xorg, Xvfb) produces. It is how a machine without a display device
// gets a screenshot: xwd in the guest, decoding on the host, with no
// ImageMagick or netpbm needed.
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

// ErrFormat is wrapped by every error about data Decode cannot read.
var ErrFormat = errors.New("xwd: unsupported or invalid dump")

const (
	headerFields = 25
	zPixmap      = 2
	trueColor    = 4
	directColor  = 5
	maxSide      = 1 << 15
)

// Decode reads one dump.
func Decode(r io.Reader) (image.Image, error) {
	var h [headerFields]uint32
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	var (
		headerSize   = h[0]
		version      = h[1]
		format       = h[2]
		width        = h[4]
		height       = h[5]
		byteOrder    = h[7]
		bitsPerPixel = h[11]
		bytesPerLine = h[12]
		visualClass  = h[13]
		masks        = [3]uint32{h[14], h[15], h[16]}
		ncolors      = h[19]
	)
	switch {
	case version != 7:
		return nil, fmt.Errorf("%w: version %d, want 7", ErrFormat, version)
	case format != zPixmap:
		return nil, fmt.Errorf("%w: pixmap format %d, want ZPixmap", ErrFormat, format)
	case visualClass != trueColor && visualClass != directColor:
		return nil, fmt.Errorf("%w: visual class %d, want TrueColor", ErrFormat, visualClass)
	case bitsPerPixel != 24 && bitsPerPixel != 32:
		return nil, fmt.Errorf("%w: %d bits per pixel, want 24 or 32", ErrFormat, bitsPerPixel)
	case width == 0 || height == 0 || width > maxSide || height > maxSide:
		return nil, fmt.Errorf("%w: size %dx%d", ErrFormat, width, height)
	case bytesPerLine < width*bitsPerPixel/8:
		return nil, fmt.Errorf("%w: %d bytes per line for %d pixels", ErrFormat, bytesPerLine, width)
	case headerSize < 4*headerFields || headerSize > 4*headerFields+4096:
		return nil, fmt.Errorf("%w: header size %d", ErrFormat, headerSize)
	case ncolors > 1<<16:
		return nil, fmt.Errorf("%w: %d colormap entries", ErrFormat, ncolors)
	}
	for _, m := range masks {
		if m == 0 {
			return nil, fmt.Errorf("%w: empty colour mask", ErrFormat)
		}
	}
	// The window name, then the colormap (12 bytes an entry): not needed
	// for TrueColor.
	if _, err := io.CopyN(io.Discard, r, int64(headerSize-4*headerFields)+12*int64(ncolors)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	img := image.NewRGBA(image.Rect(0, 0, int(width), int(height)))
	line := make([]byte, bytesPerLine)
	bpp := int(bitsPerPixel / 8)
	for y := 0; y < int(height); y++ {
		if _, err := io.ReadFull(r, line); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFormat, y, err)
		}
		for x := 0; x < int(width); x++ {
			px := line[x*bpp : x*bpp+bpp]
			var v uint32
			for i := range px {
				if byteOrder == 0 { // LSBFirst
					v |= uint32(px[i]) << (8 * i)
				} else {
					v = v<<8 | uint32(px[i])
				}
			}
			img.SetRGBA(x, y, color.RGBA{channel(v, masks[0]), channel(v, masks[1]), channel(v, masks[2]), 255})
		}
	}
	return img, nil
}

// channel extracts the colour under mask, scaled to 8 bits.
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
	return uint8(c * 255 / (1<<width - 1))
}
