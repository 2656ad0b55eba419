package pycompat

import "testing"

func TestStarredAssign(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a, *rest = [1, 2, 3]\n", "a, rest = unpack_([1, 2, 3], 1, 0)\n"},
		{"first, *mid, last = s.split()  # words\n", "first, mid, last = unpack_(s.split(), 1, 1)  # words\n"},
		{"*init, tail = f(x)\n", "init, tail = unpack_(f(x), 0, 1)\n"},
	} {
		res, err := Rewrite("t.py", []byte(tt.in))
		if err != nil {
			t.Errorf("Rewrite(%q): %v", tt.in, err)
			continue
		}
		if string(res.Source) != tt.want {
			t.Errorf("Rewrite(%q) = %q, want %q", tt.in, res.Source, tt.want)
		}
	}
	// Other starred targets are still refused, with the hint.
	if _, err := Rewrite("t.py", []byte("a.b, *c = x\n")); err == nil {
		t.Error("a starred target beside an attribute was accepted")
	}
}
