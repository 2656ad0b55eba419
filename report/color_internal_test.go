package report

import "testing"

func TestColorForRule(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		env      map[string]string
		want     bool
	}{
		{"terminal", true, map[string]string{"TERM": "xterm-256color"}, true},
		{"terminal, NO_COLOR empty", true, map[string]string{"NO_COLOR": ""}, true},
		{"terminal, NO_COLOR set", true, map[string]string{"NO_COLOR": "1"}, false},
		{"terminal, TERM=dumb", true, map[string]string{"TERM": "dumb"}, false},
		{"not a terminal", false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			if got := colorFor(tt.terminal, getenv); got != tt.want {
				t.Errorf("colorFor(%v, %v) = %v, want %v", tt.terminal, tt.env, got, tt.want)
			}
		})
	}
}
