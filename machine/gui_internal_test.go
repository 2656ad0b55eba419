package machine

import (
	"regexp"
	"slices"
	"testing"

	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

func TestWindowNames(t *testing.T) {
	tree := `
xwininfo: Window id: 0x3ab (the root window) (has no name)

  Root window id: 0x3ab (the root window) (has no name)
  Parent window id: 0x0 (none)
     5 children:
     0x400001 "xterm": ("xterm" "XTerm")  660x330+40+40  +40+40
        1 child:
        0x400002 (has no name): ()  1x1+-1+-1  +39+39
     0x200003 "icewm \"quoted\" title": ("icewm" "IceWM")  1x1+0+0  +0+0
     0x200001 (has no name): ()  1x1+-1+-1  +-1+-1
`
	want := []string{"xterm", `icewm \"quoted\" title`}
	if got := windowNames(tree); !slices.Equal(got, want) {
		t.Errorf("windowNames = %q, want %q", got, want)
	}
}

func TestXdotoolKeys(t *testing.T) {
	for key, want := range map[string]string{
		"ret": "Return", "ctrl-alt-delete": "ctrl+alt+Delete", "alt-f2": "alt+F2",
		"ctrl-c": "ctrl+c", "shift-tab": "shift+Tab", "meta_l-e": "super+e",
		"-": "minus", "ctrl--": "ctrl+minus", "f12": "F12", "a": "a",
	} {
		if got := xdotoolKeys(key); got != want {
			t.Errorf("xdotoolKeys(%q) = %q, want %q", key, got, want)
		}
	}
	if got, want := xdotoolCommand("'"), guestcmd.XType("'", 0); got != want {
		t.Errorf("xdotoolCommand(') = %s, want %s", got, want)
	}
	if got, want := xdotoolCommand("ctrl-alt-delete"), guestcmd.XKey("ctrl+alt+Delete"); got != want {
		t.Errorf("xdotoolCommand(ctrl-alt-delete) = %s, want %s", got, want)
	}
}

func TestTextMatcher(t *testing.T) {
	tests := []struct {
		pattern, text string
		want          bool
	}{
		{"kumquat-31337", "alice$ echo kumquat -31337\n", true},
		{"kumquat-31337", "kumquat-3133", false},
		{`banana \d+`, "banana 4242", true},
		{`banana \d+`, "bana na4242", false},
		{`x\sy`, "x y", true},
	}
	for _, tt := range tests {
		if got := textMatcher(regexp.MustCompile(tt.pattern))(tt.text); got != tt.want {
			t.Errorf("textMatcher(%q)(%q) = %v, want %v", tt.pattern, tt.text, got, tt.want)
		}
	}
}
