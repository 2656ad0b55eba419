package ocr

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"io"
)

// gray converts img to 8-bit grayscale (ITU-R 601 luma, as image/color).
func gray(img image.Image) *image.Gray {
	b := img.Bounds()
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			g.SetGray(x, y, color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray))
		}
	}
	return g
}

// scale2x doubles g's size with bilinear interpolation: tesseract reads
// small screen fonts better at twice their pixel height.
func scale2x(g *image.Gray) *image.Gray {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	out := image.NewGray(image.Rect(0, 0, 2*w, 2*h))
	at := func(x, y int) int {
		x, y = min(x, w-1), min(y, h-1)
		return int(g.Pix[y*g.Stride+x])
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p, r, d, dr := at(x, y), at(x+1, y), at(x, y+1), at(x+1, y+1)
			o := 2*y*out.Stride + 2*x
			out.Pix[o] = uint8(p)
			out.Pix[o+1] = uint8((p + r + 1) / 2)
			out.Pix[o+out.Stride] = uint8((p + d + 1) / 2)
			out.Pix[o+out.Stride+1] = uint8((p + r + d + dr + 2) / 4)
		}
	}
	return out
}

// negate inverts g in place: light text on a dark background becomes
// dark on light, which tesseract prefers.
func negate(g *image.Gray) *image.Gray {
	for i, p := range g.Pix {
		g.Pix[i] = 255 - p
	}
	return g
}

// threshold turns g black and white in place at level t.
func threshold(g *image.Gray, t uint8) *image.Gray {
	for i, p := range g.Pix {
		if p >= t {
			g.Pix[i] = 255
		} else {
			g.Pix[i] = 0
		}
	}
	return g
}

// writePNM writes img as binary PGM (grayscale) or PPM: formats tesseract
// reads on stdin that cost nothing to encode.
func writePNM(w io.Writer, img image.Image) {
	bw := bufio.NewWriterSize(w, 1<<16)
	defer bw.Flush()
	b := img.Bounds()
	if g, ok := img.(*image.Gray); ok {
		fmt.Fprintf(bw, "P5\n%d %d\n255\n", b.Dx(), b.Dy())
		for y := 0; y < b.Dy(); y++ {
			bw.Write(g.Pix[y*g.Stride : y*g.Stride+b.Dx()])
		}
		return
	}
	fmt.Fprintf(bw, "P6\n%d %d\n255\n", b.Dx(), b.Dy())
	row := make([]byte, 3*b.Dx())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			i := 3 * (x - b.Min.X)
			row[i], row[i+1], row[i+2] = uint8(r>>8), uint8(g>>8), uint8(bl>>8)
		}
		bw.Write(row)
	}
}
