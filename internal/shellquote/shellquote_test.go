package shellquote

import "testing"

func TestQuote(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "''"},
		{"/tmp/shared", "/tmp/shared"},
		{"trans=virtio,version=9p2000.L", "trans=virtio,version=9p2000.L"},
		{"-rf", "'-rf'"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(x)", "'$(x)'"},
	} {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
