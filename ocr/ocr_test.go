package ocr

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// glyphs is a 5x7 block font for the characters the tests draw.
var glyphs = map[rune][7]string{
	'H': {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'L': {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'O': {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
}

// drawText renders s in the block font, scale pixels per dot, dark on
// light (or light on dark when inverted), with a margin.
func drawText(s string, scale int, inverted bool) *image.RGBA {
	fg, bg := color.RGBA{20, 20, 20, 255}, color.RGBA{235, 235, 235, 255}
	if inverted {
		fg, bg = bg, fg
	}
	margin := 4 * scale
	w, h := 2*margin+len(s)*6*scale, 2*margin+7*scale
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = [4]uint8{bg.R, bg.G, bg.B, bg.A}[i%4]
	}
	for i, r := range s {
		for row, line := range glyphs[r] {
			for col, dot := range line {
				if dot != '#' {
					continue
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						img.Set(margin+(i*6+col)*scale+dx, margin+row*scale+dy, fg)
					}
				}
			}
		}
	}
	return img
}

func TestPrepare(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 2, 2))
	copy(src.Pix, []uint8{0, 100, 200, 255})
	big := scale2x(src)
	if b := big.Bounds(); b.Dx() != 4 || b.Dy() != 4 {
		t.Fatalf("scale2x gave %v", b)
	}
	// Corners keep their pixels; between them is the average.
	if big.GrayAt(0, 0).Y != 0 || big.GrayAt(1, 0).Y != 50 || big.GrayAt(2, 2).Y != 255 || big.GrayAt(1, 1).Y != 139 {
		t.Errorf("scale2x pixels %v", big.Pix)
	}
	if n := negate(scale2x(src)); n.GrayAt(0, 0).Y != 255 || n.GrayAt(2, 2).Y != 0 {
		t.Errorf("negate pixels %v", n.Pix)
	}
	th := threshold(scale2x(src), 128)
	for _, p := range th.Pix {
		if p != 0 && p != 255 {
			t.Fatalf("threshold left %d", p)
		}
	}
	var b bytes.Buffer
	writePNM(&b, src)
	if want := "P5\n2 2\n255\n\x00\x64\xc8\xff"; b.String() != want {
		t.Errorf("PGM %q, want %q", b.String(), want)
	}
	b.Reset()
	rgb := image.NewRGBA(image.Rect(0, 0, 1, 1))
	rgb.Set(0, 0, color.RGBA{1, 2, 3, 255})
	writePNM(&b, rgb)
	if want := "P6\n1 1\n255\n\x01\x02\x03"; b.String() != want {
		t.Errorf("PPM %q, want %q", b.String(), want)
	}
}

// TestRead runs the real tesseract on drawn text, dark on light and
// light on dark.
func TestRead(t *testing.T) {
	testenv.NeedCommand(t, "tesseract")
	r, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	re := regexp.MustCompile(`HELLO\s*4242`)
	for _, inverted := range []bool{false, true} {
		img := drawText("HELLO 4242", 4, inverted)
		res, all, err := r.Find(ctx, img, re.MatchString)
		if err != nil {
			t.Fatalf("inverted=%v: %v (read %+v)", inverted, err, all)
		}
		t.Logf("inverted=%v: %s read %q in %s", inverted, res.Variant, strings.TrimSpace(res.Text), res.Took)
	}
	all, err := r.All(ctx, drawText("HELLO", 4, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(Variants) {
		t.Fatalf("All gave %d results", len(all))
	}
	found := false
	for _, res := range all {
		found = found || strings.Contains(res.Text, "HELLO")
	}
	if !found {
		t.Errorf("no variant read HELLO: %+v", all)
	}
}

// fakeTesseract is a tesseract stand-in: it answers the plain variant
// (a PPM on stdin) at once with "fast" and sleeps on the others, leaving
// its pid so the test can see it was killed.
func fakeTesseract(t *testing.T) (bin, pids string) {
	t.Helper()
	dir := t.TempDir()
	pids = filepath.Join(dir, "pids")
	bin = filepath.Join(dir, "tesseract")
	script := `#!/bin/sh
head -c 2 | grep -q P6 && { echo fast; exit 0; }
echo $$ >> "` + pids + `"
exec sleep 30
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, pids
}

// TestFindFirstMatchWins: the first matching variant returns at once and
// the slower ones are killed, not waited for.
func TestFindFirstMatchWins(t *testing.T) {
	testenv.NeedCommand(t, "sh")
	bin, pids := fakeTesseract(t)
	r := &Reader{bin: bin, sem: make(chan struct{}, len(Variants))}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, _, err := r.Find(ctx, drawText("HE", 1, false), func(s string) bool { return strings.Contains(s, "fast") })
	if err != nil {
		t.Fatal(err)
	}
	if res.Variant != "plain" {
		t.Errorf("winner %s, want plain", res.Variant)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Find waited %s for the cancelled variants", took)
	}
	// No match at all: every result and ErrNoMatch; the sleepers are
	// ended by the context.
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	_, _, err = r.Find(short, drawText("HE", 1, false), func(string) bool { return false })
	if err == nil || errors.Is(err, ErrNoMatch) {
		t.Errorf("Find with sleeping variants = %v, want the context's error", err)
	}
	if _, err := os.Stat(pids); err != nil {
		t.Fatalf("the slow variants never ran: %v", err)
	}
}

// TestNoTesseract: a missing tesseract is an error naming the package.
func TestNoTesseract(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := New(0)
	if err == nil || !strings.Contains(err.Error(), "tesseract-ocr") {
		t.Errorf("New without tesseract = %v, want an error naming tesseract-ocr", err)
	}
}
