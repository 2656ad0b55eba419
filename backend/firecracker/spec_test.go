package firecracker

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// defaultSpecs is where the shared API descriptions live on the
// development machine; VMDRIVER_SPECS overrides it.
const defaultSpecs = "/work/shared/specs"

// apiSpec is the part of firecracker.yaml the fake VMM checks requests
// against: which methods each path takes, the body each one wants, and
// each body's required and known properties, their types and enums.
type apiSpec struct {
	ops  map[string]map[string]string // path template -> method -> body definition ("" for none)
	defs map[string]*definition
}

type definition struct {
	required []string
	props    map[string]*property
}

type property struct {
	typ  string // string, integer, boolean, array, object, or "" for a $ref
	ref  string
	enum []string
}

// loadSpec reads firecracker.yaml or skips the test when it is absent.
func loadSpec(t testing.TB) *apiSpec {
	t.Helper()
	dir := os.Getenv("VMDRIVER_SPECS")
	if dir == "" {
		dir = defaultSpecs
	}
	path := filepath.Join(dir, "firecracker.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no Firecracker API description (%v): set VMDRIVER_SPECS to the directory holding firecracker.yaml", err)
	}
	defer f.Close()
	s, err := parseSpec(bufio.NewScanner(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

var refRE = regexp.MustCompile(`\$ref: "#/definitions/(\w+)"`)

// parseSpec reads the Swagger file by indentation: it is regular enough
// (two spaces a level) that the few parts used here need no YAML library.
func parseSpec(sc *bufio.Scanner) (*apiSpec, error) {
	s := &apiSpec{ops: map[string]map[string]string{}, defs: map[string]*definition{}}
	var section, path, method, def, listKey string
	var inBody bool
	var prop *property
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " ")
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			section = strings.TrimSuffix(text, ":")
			continue
		}
		switch section {
		case "paths":
			switch {
			case indent == 2:
				path = strings.TrimSuffix(text, ":")
				s.ops[path] = map[string]string{}
			case indent == 4:
				method = strings.ToUpper(strings.TrimSuffix(text, ":"))
				s.ops[path][method] = ""
				inBody = false
			case indent == 6:
				inBody = false
			case text == "in: body":
				inBody = true
			case inBody && s.ops[path][method] == "" && refRE.MatchString(text):
				s.ops[path][method] = refRE.FindStringSubmatch(text)[1]
			}
		case "definitions":
			switch {
			case indent == 2:
				def = strings.TrimSuffix(text, ":")
				s.defs[def] = &definition{props: map[string]*property{}}
				listKey, prop = "", nil
			case indent == 4:
				listKey = strings.TrimSuffix(text, ":")
				prop = nil
			case indent == 6 && listKey == "required" && strings.HasPrefix(text, "- "):
				s.defs[def].required = append(s.defs[def].required, strings.TrimPrefix(text, "- "))
			case indent == 6 && listKey == "properties":
				prop = &property{}
				s.defs[def].props[strings.TrimSuffix(text, ":")] = prop
			case indent == 8 && prop != nil && strings.HasPrefix(text, "type: "):
				prop.typ = strings.Trim(strings.TrimPrefix(text, "type: "), `"`)
			case indent == 8 && prop != nil && refRE.MatchString(text):
				prop.ref = refRE.FindStringSubmatch(text)[1]
			case indent == 10 && prop != nil && strings.HasPrefix(text, "- "):
				prop.enum = append(prop.enum, strings.Trim(strings.TrimPrefix(text, "- "), `"`))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(s.ops) == 0 || len(s.defs) == 0 {
		return nil, fmt.Errorf("found %d paths and %d definitions: not the Swagger file expected", len(s.ops), len(s.defs))
	}
	return s, nil
}

// match finds the path template for path and the body definition its
// method wants.
func (s *apiSpec) match(method, path string) (template, body string, err error) {
	for tmpl, methods := range s.ops {
		re := "^" + regexp.MustCompile(`\\\{\w+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$"
		if !regexp.MustCompile(re).MatchString(path) {
			continue
		}
		b, ok := methods[method]
		if !ok {
			return tmpl, "", fmt.Errorf("%s does not take %s", tmpl, method)
		}
		return tmpl, b, nil
	}
	return "", "", fmt.Errorf("no path %s in the API", path)
}

// check validates a decoded JSON body against definition name.
func (s *apiSpec) check(name string, body any) error {
	d, ok := s.defs[name]
	if !ok {
		return fmt.Errorf("no definition %s", name)
	}
	obj, ok := body.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: want an object, got %T", name, body)
	}
	for _, r := range d.required {
		if _, ok := obj[r]; !ok {
			return fmt.Errorf("%s: required property %s is missing", name, r)
		}
	}
	for k, v := range obj {
		p, ok := d.props[k]
		if !ok {
			return fmt.Errorf("%s: unknown property %s", name, k)
		}
		if p.ref != "" {
			if err := s.check(p.ref, v); err != nil {
				return fmt.Errorf("%s.%s: %w", name, k, err)
			}
			continue
		}
		var okType bool
		switch p.typ {
		case "string":
			_, okType = v.(string)
		case "integer":
			f, isNum := v.(float64)
			okType = isNum && f == float64(int64(f))
		case "boolean":
			_, okType = v.(bool)
		case "array":
			_, okType = v.([]any)
		case "object", "":
			okType = true
		}
		if !okType {
			return fmt.Errorf("%s.%s: want %s, got %v", name, k, p.typ, v)
		}
		if len(p.enum) > 0 {
			if str, _ := v.(string); !contains(p.enum, str) {
				return fmt.Errorf("%s.%s: %v is not one of %v", name, k, v, p.enum)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSpecParses(t *testing.T) {
	s := loadSpec(t)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/boot-source", "BootSource"},
		{"PUT", "/drives/disk0", "Drive"},
		{"PATCH", "/drives/disk0", "PartialDrive"},
		{"PUT", "/network-interfaces/eth1", "NetworkInterface"},
		{"PUT", "/vsock", "Vsock"},
		{"PUT", "/actions", "InstanceActionInfo"},
		{"PATCH", "/vm", "Vm"},
		{"PUT", "/snapshot/create", "SnapshotCreateParams"},
		{"PUT", "/snapshot/load", "SnapshotLoadParams"},
		{"GET", "/version", ""},
	} {
		_, body, err := s.match(c.method, c.path)
		if err != nil || body != c.body {
			t.Errorf("%s %s: body %q, %v; want %q", c.method, c.path, body, err, c.body)
		}
	}
	if _, _, err := s.match("DELETE", "/vm"); err == nil {
		t.Error("DELETE /vm matched")
	}
	if err := s.check("InstanceActionInfo", map[string]any{"action_type": "Reboot"}); err == nil {
		t.Error("an action outside the enum passed")
	}
	if err := s.check("Vsock", map[string]any{"guest_cid": 3.0}); err == nil {
		t.Error("a Vsock without uds_path passed")
	}
}
