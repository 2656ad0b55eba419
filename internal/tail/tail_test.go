package tail

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		n      int
		want   []string
	}{
		{"empty", 64, nil, 5, nil},
		{"few lines", 64, []string{"a\nb\n", "c"}, 5, []string{"a", "b", "c"}},
		{"last n", 64, []string{"a\nb\nc\nd\n"}, 2, []string{"c", "d"}},
		{"carriage returns dropped", 64, []string{"a\r\nb\r\n"}, 5, []string{"a", "b"}},
		{"cut line dropped", 8, []string{"first line\nsecond\n"}, 5, []string{"second"}},
		{"split writes", 64, []string{"he", "llo\nwor", "ld\n"}, 5, []string{"hello", "world"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.max)
			for _, w := range tt.writes {
				b.Write([]byte(w))
			}
			if got := b.Lines(tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("Lines(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

type failAfter struct {
	n   int
	got bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("sink closed")
	}
	f.n--
	return f.got.Write(p)
}

func TestTee(t *testing.T) {
	buf := New(1 << 10)
	sink := &failAfter{n: 1}
	var errs []error
	w := Tee(buf, sink, func(err error) { errs = append(errs, err) })
	for _, s := range []string{"one\n", "two\n", "three\n"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want all of it, no error", s, n, err)
		}
	}
	if got := buf.String(); got != "one\ntwo\nthree" { // String drops the last newline
		t.Errorf("tail = %q, want every write", got)
	}
	if got := sink.got.String(); got != "one\n" {
		t.Errorf("sink got %q, want only what it took before failing", got)
	}
	if len(errs) != 1 {
		t.Errorf("onErr called %d times, want once: %v", len(errs), errs)
	}
	// Without a sink it only keeps the tail.
	if _, err := Tee(buf, nil, nil).Write([]byte("four\n")); err != nil || !strings.HasSuffix(buf.String(), "three\nfour") {
		t.Errorf("nil sink: %v, tail %q", err, buf.String())
	}
}
