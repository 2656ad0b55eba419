package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// aptSource is one (type deb, URI, suite) triple of the host's apt
// configuration.
type aptSource struct {
	URI        string
	Suite      string
	Components []string
	// SignedBy is the keyring file named by signed-by, if it is a path.
	SignedBy string
}

// parseSourcesList parses the one-line format of sources.list and
// sources.list.d/*.list, returning only `deb` entries.
func parseSourcesList(text string) []aptSource {
	var out []aptSource
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		rest := fields[1:]
		var signedBy string
		if strings.HasPrefix(rest[0], "[") {
			// Options: [ key=value ... ], possibly with spaces inside.
			var opts []string
			for len(rest) > 0 {
				tok := rest[0]
				rest = rest[1:]
				done := strings.HasSuffix(tok, "]")
				tok = strings.Trim(tok, "[]")
				if tok != "" {
					opts = append(opts, tok)
				}
				if done {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok && k == "signed-by" && strings.HasPrefix(v, "/") {
					signedBy = v
				}
			}
		}
		if len(rest) < 2 {
			continue
		}
		out = append(out, aptSource{URI: rest[0], Suite: rest[1], Components: rest[2:], SignedBy: signedBy})
	}
	return out
}

// parseDeb822Sources parses the deb822 format of sources.list.d/*.sources,
// returning one entry per `deb` URI and suite of every enabled stanza.
func parseDeb822Sources(text string) []aptSource {
	var out []aptSource
	flush := func(st map[string]string) {
		if len(st) == 0 || strings.EqualFold(st["enabled"], "no") {
			return
		}
		if !slices.Contains(strings.Fields(st["types"]), "deb") {
			return
		}
		var signedBy string
		if v := strings.TrimSpace(st["signed-by"]); strings.HasPrefix(v, "/") && !strings.ContainsAny(v, " \n") {
			signedBy = v
		}
		var comps []string
		if c := strings.Fields(st["components"]); len(c) > 0 {
			comps = c
		}
		for _, uri := range strings.Fields(st["uris"]) {
			for _, suite := range strings.Fields(st["suites"]) {
				out = append(out, aptSource{URI: uri, Suite: suite, Components: comps, SignedBy: signedBy})
			}
		}
	}
	st := map[string]string{}
	last := ""
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			flush(st)
			st, last = map[string]string{}, ""
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				st[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			st[last] = strings.TrimSpace(v)
		}
	}
	flush(st)
	return out
}

// hostSources reads the host's apt sources in apt's order: sources.list,
// then sources.list.d/*.list and *.sources by file name.
func hostSources(etc string) ([]aptSource, error) {
	var out []aptSource
	if data, err := os.ReadFile(filepath.Join(etc, "apt/sources.list")); err == nil {
		out = append(out, parseSourcesList(string(data))...)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(etc, "apt/sources.list.d"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range entries { // ReadDir sorts by name
		p := filepath.Join(etc, "apt/sources.list.d", e.Name())
		switch filepath.Ext(e.Name()) {
		case ".list":
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, parseSourcesList(string(data))...)
		case ".sources":
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, parseDeb822Sources(string(data))...)
		}
	}
	return out, nil
}

// hostCodename returns VERSION_CODENAME from os-release.
func hostCodename(etc string) (string, error) {
	data, err := os.ReadFile(filepath.Join(etc, "os-release"))
	if err != nil {
		return "", fmt.Errorf("read os-release to learn the Debian release: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%s/os-release has no VERSION_CODENAME: the systemd guest needs a Debian release host", etc)
}

// pickMirror returns the first deb source whose suite is the codename.
func pickMirror(srcs []aptSource, codename string) (aptSource, error) {
	for _, s := range srcs {
		if s.Suite == codename {
			return s, nil
		}
	}
	return aptSource{}, fmt.Errorf("no `deb` source for suite %q in the host's apt configuration (/etc/apt/sources.list, /etc/apt/sources.list.d): add the Debian mirror there", codename)
}

// hostMirror returns the Debian mirror of the host's own release.
func hostMirror(etc string) (aptSource, string, error) {
	codename, err := hostCodename(etc)
	if err != nil {
		return aptSource{}, "", err
	}
	srcs, err := hostSources(etc)
	if err != nil {
		return aptSource{}, "", fmt.Errorf("read the host's apt sources: %w", err)
	}
	m, err := pickMirror(srcs, codename)
	return m, codename, err
}

// pkgInfo is the candidate version of one package as apt-cache shows it.
type pkgInfo struct {
	Package string `json:"package"`
	Version string `json:"version"`
	Depends string `json:"depends,omitempty"`
}

// parseAptShow parses `apt-cache show` stanzas.
func parseAptShow(text string) map[string]pkgInfo {
	out := map[string]pkgInfo{}
	var cur pkgInfo
	flush := func() {
		if cur.Package != "" {
			if _, dup := out[cur.Package]; !dup {
				out[cur.Package] = cur
			}
		}
		cur = pkgInfo{}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || line[0] == ' ' {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Package = v
		case "Version":
			cur.Version = v
		case "Depends":
			cur.Depends = v
		}
	}
	flush()
	return out
}

// exactDep returns the first dependency of a Depends field and the version
// it pins with `(= V)`, if any.
func exactDep(depends string) (name, version string) {
	first, _, _ := strings.Cut(depends, ",")
	first, _, _ = strings.Cut(first, "|")
	first = strings.TrimSpace(first)
	name, rest, _ := strings.Cut(first, " ")
	name, _, _ = strings.Cut(name, "(")
	name, _, _ = strings.Cut(name, ":") // multi-arch qualifier
	rest = strings.TrimSpace(rest)
	if v, ok := strings.CutPrefix(rest, "(="); ok {
		version = strings.TrimSpace(strings.TrimSuffix(v, ")"))
	}
	return name, version
}

// aptStateKey fingerprints everything that decides apt's candidate
// versions (package lists, sources, pins, installed packages) without
// reading the lists, so resolved versions can be memoized: apt-cache
// needs about a second per call on hosts without a binary cache.
func aptStateKey() (string, error) {
	h := sha256.New()
	add := func(p string) error {
		fi, err := os.Stat(p)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	}
	globs := []string{
		"/var/lib/apt/lists/*",
		"/etc/apt/sources.list", "/etc/apt/sources.list.d/*",
		"/etc/apt/preferences", "/etc/apt/preferences.d/*",
		"/etc/apt/apt.conf", "/etc/apt/apt.conf.d/*",
		"/var/lib/dpkg/status",
	}
	for _, g := range globs {
		ms, err := filepath.Glob(g)
		if err != nil {
			return "", err
		}
		for _, m := range ms {
			if err := add(m); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ensureAptLists runs apt-get update when the host has no package lists
// (as in freshly cleaned containers); otherwise it leaves them alone.
func (b *builder) ensureAptLists(ctx context.Context) error {
	ms, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	if len(ms) > 0 {
		return nil
	}
	if !isRoot() {
		return fmt.Errorf("the host has no apt package lists and updating them %w: run `apt-get update` as root", ErrNeedRoot)
	}
	b.logf("images: no apt package lists; running apt-get update")
	start := time.Now()
	if _, err := run(ctx, command{name: "apt-get", args: []string{"update", "-q"}}); err != nil {
		return err
	}
	b.logf("images: apt-get update in %.1fs", time.Since(start).Seconds())
	return nil
}

// aptShow returns the candidate versions of pkgs, memoized under
// CacheDir/versions by the apt state.
func (b *builder) aptShow(ctx context.Context, pkgs []string) (map[string]pkgInfo, error) {
	if err := b.ensureAptLists(ctx); err != nil {
		return nil, err
	}
	state, err := aptStateKey()
	if err != nil {
		return nil, fmt.Errorf("fingerprint apt state: %w", err)
	}
	sum := sha256.Sum256([]byte(state + "\n" + strings.Join(pkgs, " ")))
	memo := filepath.Join(b.cache, "versions", hex.EncodeToString(sum[:12])+".json")
	if data, err := os.ReadFile(memo); err == nil {
		var m map[string]pkgInfo
		if json.Unmarshal(data, &m) == nil && hasAll(m, pkgs) {
			_ = touch(memo) // its last use, for Prune
			return m, nil
		}
	}
	start := time.Now()
	out, err := run(ctx, command{name: "apt-cache", args: append([]string{"show", "--no-all-versions"}, pkgs...)})
	if err != nil {
		return nil, fmt.Errorf("query package versions: %w", err)
	}
	m := parseAptShow(string(out))
	if !hasAll(m, pkgs) {
		var missing []string
		for _, p := range pkgs {
			if _, ok := m[p]; !ok {
				missing = append(missing, p)
			}
		}
		return nil, fmt.Errorf("apt knows no candidate for %s: check the host's apt sources", strings.Join(missing, ", "))
	}
	b.logf("images: resolved %d package versions with apt-cache in %.1fs", len(pkgs), time.Since(start).Seconds())
	if data, err := json.Marshal(m); err == nil {
		if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
			_ = writeFileAtomic(memo, data, 0o644) // a memo that fails to save costs a second next time
		}
	}
	return m, nil
}

func hasAll(m map[string]pkgInfo, pkgs []string) bool {
	for _, p := range pkgs {
		if m[p].Version == "" {
			return false
		}
	}
	return true
}

// debFilePrefix is the start of the name apt-get download gives a package file
// (the epoch colon is escaped as %3a).
func debFilePrefix(pkg, version string) string {
	return pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_"
}

// downloadDebs returns the paths of the .deb files of the given exact
// package versions, downloading the missing ones with apt-get download
// into CacheDir/debs.
func (b *builder) downloadDebs(ctx context.Context, pkgs []pkgInfo) (map[string]string, error) {
	dir := filepath.Join(b.cache, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	find := func(p pkgInfo) string {
		ms, _ := filepath.Glob(filepath.Join(dir, globEscape(debFilePrefix(p.Package, p.Version))+"*.deb"))
		if len(ms) > 0 {
			_ = touch(ms[0]) // its last use, for Prune
			return ms[0]
		}
		return ""
	}
	paths := map[string]string{}
	var want []string
	for _, p := range pkgs {
		if f := find(p); f != "" {
			paths[p.Package] = f
		} else {
			want = append(want, p.Package+"="+p.Version)
		}
	}
	if len(want) == 0 {
		return paths, nil
	}
	b.logf("images: downloading %s", strings.Join(want, " "))
	start := time.Now()
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"download", "-q"}
	if isRoot() {
		// The _apt sandbox user cannot write into our private temp dir.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	if _, err := run(ctx, command{name: "apt-get", args: append(args, want...), dir: tmp}); err != nil {
		return nil, fmt.Errorf("download packages: %w", err)
	}
	got, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	for _, e := range got {
		if strings.HasSuffix(e.Name(), ".deb") {
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range pkgs {
		f := find(p)
		if f == "" {
			return nil, fmt.Errorf("apt-get download did not produce %s %s", p.Package, p.Version)
		}
		paths[p.Package] = f
	}
	b.logf("images: downloaded %d packages in %.1fs", len(want), time.Since(start).Seconds())
	return paths, nil
}

// globEscape escapes the glob metacharacters of s.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// unpackDeb extracts a .deb into dir.
func unpackDeb(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_, err := run(ctx, command{name: "dpkg-deb", args: []string{"-x", deb, dir}})
	return err
}
