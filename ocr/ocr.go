// Package ocr reads the text on a machine's screen with tesseract.
//
// The NixOS driver runs every preprocessing variant of a screenshot in
// turn through ImageMagick and tesseract and looks at the text only when
// all are done; its users report waits of minutes. Here the variants are
// made in Go (no ImageMagick), run side by side, and the first one whose
// text matches wins: the others are cancelled, their tesseract processes
// killed. Concurrency is bounded by the Reader (one tesseract process per
// core by default, each limited to one thread).
package ocr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// Result is the text one variant gave.
type Result struct {
	// Variant names the preprocessing ("plain", "gray-2x", ...).
	Variant string
	// Text is tesseract's output.
	Text string
	// Took is how long preprocessing and tesseract took.
	Took time.Duration
}

// A Variant is one way of preparing a screenshot for tesseract.
type Variant struct {
	// Name names it in results and logs.
	Name string
	// Prepare returns the image tesseract reads; nil means the image as
	// it is.
	Prepare func(image.Image) image.Image
}

// Variants are the preprocessings tried, plain first. On this project's
// measurements (docs/design.md) the 2x grayscale ones read xterm text
// exactly where plain ones sometimes split a word.
var Variants = []Variant{
	{Name: "plain"},
	{Name: "gray-2x", Prepare: func(img image.Image) image.Image { return scale2x(gray(img)) }},
	{Name: "negate-2x", Prepare: func(img image.Image) image.Image { return negate(scale2x(gray(img))) }},
	{Name: "threshold-2x", Prepare: func(img image.Image) image.Image { return threshold(scale2x(gray(img)), 128) }},
}

// Reader runs tesseract. It is safe for concurrent use; its methods
// never run more tesseract processes at once than its limit.
type Reader struct {
	bin string
	sem chan struct{}
}

// ErrNoMatch is wrapped by Find's error when no variant's text matched.
var ErrNoMatch = errors.New("no variant of the screen text matched")

// New finds tesseract; the error names the Debian package to install
// when it is missing. limit bounds the tesseract processes run at once
// (0: the number of cores).
func New(limit int) (*Reader, error) {
	bin, err := hosttools.Path("tesseract")
	if err != nil {
		return nil, fmt.Errorf("ocr: %w", err)
	}
	if limit <= 0 {
		limit = runtime.NumCPU()
	}
	return &Reader{bin: bin, sem: make(chan struct{}, limit)}, nil
}

// Text reads img as it is (the "plain" variant).
func (r *Reader) Text(ctx context.Context, img image.Image) (string, error) {
	res, err := r.run(ctx, Variants[0], img)
	return res.Text, err
}

// All reads img through every variant, side by side, and returns the
// results in Variants' order.
func (r *Reader) All(ctx context.Context, img image.Image) ([]Result, error) {
	out := make([]Result, len(Variants))
	errs := make([]error, len(Variants))
	var wg sync.WaitGroup
	for i, v := range Variants {
		wg.Go(func() { out[i], errs[i] = r.run(ctx, v, img) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Find reads img through every variant side by side and returns the
// first result whose text match accepts, cancelling the variants still
// running. With none accepted it returns every result and an error
// wrapping ErrNoMatch.
func (r *Reader) Find(ctx context.Context, img image.Image, match func(text string) bool) (Result, []Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel the variants still running, then wait for them to end.
	defer func() { cancel(); wg.Wait() }()
	type done struct {
		res Result
		err error
	}
	ch := make(chan done, len(Variants))
	for _, v := range Variants {
		wg.Go(func() {
			res, err := r.run(ctx, v, img)
			ch <- done{res, err}
		})
	}
	var all []Result
	var errs []error
	for range Variants {
		d := <-ch
		if d.err != nil {
			errs = append(errs, d.err)
			continue
		}
		all = append(all, d.res)
		if match(d.res.Text) {
			return d.res, all, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, all, err
	}
	if len(all) == 0 {
		return Result{}, nil, errors.Join(errs...)
	}
	return Result{}, all, ErrNoMatch
}

// run prepares img by v and runs tesseract on it.
func (r *Reader) run(ctx context.Context, v Variant, img image.Image) (Result, error) {
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	start := time.Now()
	if v.Prepare != nil {
		img = v.Prepare(img)
	}
	var in bytes.Buffer
	writePNM(&in, img)
	cmd := exec.CommandContext(ctx, r.bin, "stdin", "stdout", "--psm", "3")
	cmd.Stdin = &in
	// One thread per process: the Reader's limit is the CPU bound.
	cmd.Env = append(os.Environ(), "OMP_THREAD_LIMIT=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, fmt.Errorf("ocr: tesseract (%s variant): %w: %s", v.Name, err, strings.TrimSpace(stderr.String()))
	}
	return Result{Variant: v.Name, Text: stdout.String(), Took: time.Since(start)}, nil
}
