package tail

import (
	"slices"
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
