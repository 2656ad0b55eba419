package qemu

import (
	"slices"
	"testing"
)

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
