package qemu

import (
	"slices"
	"testing"
)

func TestTailBuffer(t *testing.T) {
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
			b := newTailBuffer(tt.max)
			for _, w := range tt.writes {
				b.Write([]byte(w))
			}
			if got := b.Lines(tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("Lines(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"split", []string{"a", "b\nc", "\n"}, []string{"ab", "c"}},
		{"crlf", []string{"x\r\n"}, []string{"x"}},
		{"unterminated flushed", []string{"tail"}, []string{"tail"}},
		{"overlong cut", []string{"0123456789\n"}, []string{"01234", "56789"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := &lineWriter{max: 5, fn: func(l string) { got = append(got, l) }}
			for _, s := range tt.writes {
				w.Write([]byte(s))
			}
			w.Flush()
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}
