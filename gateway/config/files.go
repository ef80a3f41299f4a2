package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// The files a config reads besides itself: secrets (${file:PATH}) and tenants (tenant_files).
// Every one is read again at each load, so a reload (SIGHUP, the admin API, server.watch_config)
// takes a rotated key or a new tenant without a restart.

// maxSecretFile bounds what ${file:PATH} reads: a secret is short, and a path naming a log or a
// device by mistake must not be read whole into the config.
const maxSecretFile = 64 << 10

// maxTenantFile bounds a tenant file: 16 MiB holds some 100,000 tenants.
const maxTenantFile = 16 << 20

// besideFile is where a path written in the config file named file (a ${file:...}, a
// tenant_files pattern) points: path itself when it is absolute, else relative to that file's
// directory.
func besideFile(file, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(file), path)
}

// readRegular reads at most max bytes of the file at path. Only a regular file (or a link to
// one, as Kubernetes mounts them), looked at before it is opened: opening a FIFO waits for a
// writer, and it or a device such as /dev/stdin would hold the load, and every reload after it,
// for as long as it gives nothing. With a root (a team's file, linkRoot), only a file under root
// once every link on the way is resolved.
func readRegular(path string, max int64, root string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if root != "" {
		if err := openedUnder(f, path, root); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// linkRoot is the directory a delegated entry's pattern (resolved beside the config file) keeps
// its team's files under: the pattern's longest leading directory without a pattern character,
// its links resolved. A team that may write among its files could otherwise write a link there
// to any file of the operator's (a provider's key, the config), which a load would read as the
// team's; a Kubernetes volume's own links (name -> ..data/name) stay under it.
func linkRoot(pattern string) string {
	dir := filepath.Dir(pattern)
	for strings.ContainsAny(dir, `*?[\`) {
		dir = filepath.Dir(dir)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return real
	}
	return dir
}

// openedUnder checks that f, opened at path, lies under root once the links on its way are
// resolved. The links are resolved after f was opened, and the file they lead to must be the one
// opened: a link swapped between the two cannot pass.
func openedUnder(f *os.File, path, root string) error {
	out := fmt.Errorf("%s leads out of %s (a link): a team's file is read only from under it", path, root)
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return out
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return out
	}
	opened, err := f.Stat()
	if err != nil {
		return err
	}
	if now, err := os.Stat(real); err != nil || !os.SameFile(opened, now) {
		return out
	}
	return nil
}

// readSecretFile reads the file a ${file:PATH} names as it is, up to one byte past what a secret
// may hold (readRegular), under root if one is given.
func readSecretFile(path, root string) ([]byte, error) {
	b, err := readRegular(path, maxSecretFile+1, root)
	if err != nil {
		return nil, fmt.Errorf("${file:...}: %w", err)
	}
	return b, nil
}

// readSecret reads a ${file:PATH} value: the file's content without the line break or breaks
// that end it (echo and most editors add one; a key never ends in one). Its errors name the
// path, never the content.
func readSecret(path, root string) (string, error) {
	b, err := readSecretFile(path, root)
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("${file:...}: %s holds more than %d KiB, more than any secret", path, maxSecretFile>>10)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// files is a list of paths, each once, in the order first added: a set that keeps its order,
// so that a config reading 40,000 files lists them in linear time.
type files struct {
	list []string
	seen map[string]bool
	// roots are the link roots of the secret files a team's file names (addSecretFiles).
	roots map[string]string
}

func (fs *files) add(p string) {
	if fs.seen == nil {
		fs.seen, fs.roots = map[string]bool{}, map[string]string{}
	}
	if !fs.seen[p] {
		fs.seen[p] = true
		fs.list = append(fs.list, p)
	}
}

// addSecretFiles adds the files the config text b (of the file named file) references as
// ${file:PATH}. Of a file of a delegated entry (s), only those its secret_files matches, as a
// load reads no other from it (delegation.refused), and under their link root.
func (fs *files) addSecretFiles(file string, b []byte, s *TenantFileSet) {
	root := ""
	if s != nil && s.Delegated && s.SecretFiles != "" {
		root = linkRoot(s.SecretFiles)
	}
	for _, m := range ref.FindAllSubmatch(b, -1) {
		if m[2] == nil {
			continue
		}
		p := besideFile(file, string(m[2]))
		if s != nil && s.Delegated {
			if ok, _ := filepath.Match(s.SecretFiles, filepath.Clean(p)); s.SecretFiles == "" || !ok {
				continue
			}
		}
		if !fs.seen[p] {
			fs.add(p)
			if root != "" {
				fs.roots[p] = root
			}
		}
	}
}

// secretFilesPattern is the secret_files pattern of a delegated entry in the config file named
// file, resolved as the paths it is matched against are.
func secretFilesPattern(file, pattern string) string {
	if pattern == "" {
		return ""
	}
	return filepath.Clean(besideFile(file, pattern))
}

// tenantReader reads the tenant files of one load, in order, each as far as its entry's bounds
// let it: a delegated entry's files hold at most max_bytes together, and are at most max_tenants
// files (an empty one counts: each is opened and read by every replica at every load and watch);
// any tenant file at most 16 MiB. The load and the watch (Digest) read through it, so that the
// watch looks at what a load reads, and no more.
type tenantReader struct {
	file         string // the config file
	sets         []TenantFileSet
	bytes, files []int // what each entry's files held so far, and how many were read
}

func newTenantReader(file string, sets []TenantFileSet) *tenantReader {
	return &tenantReader{file: file, sets: sets, bytes: make([]int, len(sets)), files: make([]int, len(sets))}
}

// read reads the tenant file tf. Past a bound it gives an error saying which, with what it read
// (nothing of a file past max_tenants files).
func (r *tenantReader) read(tf tenantFile) ([]byte, error) {
	s := &r.sets[tf.entry]
	bound, what, root := maxTenantFile, fmt.Sprintf("it holds more than %d MiB", maxTenantFile>>20), ""
	if s.Delegated {
		maxBytes, maxFiles := s.limits()
		if r.files[tf.entry]++; r.files[tf.entry] > maxFiles {
			return nil, fmt.Errorf("tenant_files[%d] matches more than %d files (max_tenants): it is not read", tf.entry, maxFiles)
		}
		bound = min(bound, max(0, maxBytes-r.bytes[tf.entry]))
		what = fmt.Sprintf("the files of tenant_files[%d] hold more than %d bytes together (max_bytes): a team's files are parsed by every replica, in up to some 60 times their size of memory", tf.entry, maxBytes)
		root = linkRoot(besideFile(r.file, s.Path))
	}
	b, err := readRegular(tf.path, int64(bound)+1, root)
	r.bytes[tf.entry] += len(b)
	if err == nil && len(b) > bound {
		err = errors.New(what)
	}
	return b, err
}

// limits are a delegated entry's max_bytes and max_tenants, their defaults where it sets none
// or one the load refuses.
func (s *TenantFileSet) limits() (maxBytes, maxTenants int) {
	maxBytes, maxTenants = defaultMaxBytes, defaultMaxTenants
	if s.MaxBytes != nil && *s.MaxBytes >= minMaxBytes && *s.MaxBytes <= maxTenantFile {
		maxBytes = *s.MaxBytes
	}
	if s.MaxTenants != nil && *s.MaxTenants >= 1 {
		maxTenants = *s.MaxTenants
	}
	return maxBytes, maxTenants
}

// tenantFile is a file an entry of tenant_files matches: its path and the entry's index.
type tenantFile struct {
	path  string
	entry int
}

// tenantFiles are the files the entries of tenant_files in the config file named file match now,
// in order: each pattern's matches sorted, each file once, where its first match puts it. A file
// a delegated entry matches is that entry's (the first such), whatever else matched it before: a
// broad pattern of the operator's listed first does not lift a team's bounds. A pattern that is
// no valid glob matches nothing here (the load says why).
func tenantFiles(file string, sets []TenantFileSet) []tenantFile {
	var out []tenantFile
	at := map[string]int{} // each file's place in out
	for i, s := range sets {
		if s.Path == "" {
			continue // an entry without its path (the load says so)
		}
		m, _ := filepath.Glob(besideFile(file, s.Path))
		for _, f := range m {
			j, ok := at[f]
			switch {
			case !ok:
				at[f] = len(out)
				out = append(out, tenantFile{f, i})
			case s.Delegated && !sets[out[j].entry].Delegated:
				out[j].entry = i
			}
		}
	}
	return out
}

// Watched are the files a load of the config text b (of the file named file) reads besides it:
// the tenant files its tenant_files match now, then every file those and b read secrets from. A
// change to any of them, or to which files a pattern matches, is a change of the config.
func Watched(file string, b []byte) []string {
	var out []string
	for _, w := range watched(file, b) {
		out = append(out, w.path)
	}
	return out
}

// Digest is a digest of the config file named file and of every file a load of it reads
// (Watched), as they are now, each read once: a file that cannot be read counts as such, so its
// appearing is a change too. It holds nothing of what the files hold (server.watch_config).
func Digest(file string) string {
	h := sha256.New()
	b, err := os.ReadFile(file)
	if err != nil {
		h.Write([]byte("unreadable\x00"))
	}
	h.Write(b)
	for _, w := range watched(file, b) {
		h.Write([]byte("\x00" + w.path + "\x00"))
		if w.err == nil {
			h.Write([]byte{1})
		}
		h.Write(w.b) // what a load read, also of a file past a bound: the load's answer turns on it
	}
	return string(h.Sum(nil))
}

// watchedFile is a file Watched names, as a load reads it: a regular file, bounded.
type watchedFile struct {
	path string
	b    []byte
	err  error
}

func watched(file string, b []byte) []watchedFile {
	var top struct {
		TenantFiles []yaml.Node `yaml:"tenant_files"`
	}
	if bytes.Contains(b, []byte("tenant_files")) { // parsing a large config at every look costs
		_ = yaml.Unmarshal(b, &top) // a file that does not parse loads no tenant files either
	}
	sets := make([]TenantFileSet, len(top.TenantFiles))
	for i, n := range top.TenantFiles {
		if n.Kind == yaml.ScalarNode {
			sets[i].Path = n.Value
		} else {
			_ = n.Decode(&sets[i])
			sets[i].Delegated = true
			sets[i].SecretFiles = secretFilesPattern(file, sets[i].SecretFiles)
		}
	}
	var out []watchedFile
	var paths, secrets files
	tenants := newTenantReader(file, sets)
	for _, t := range tenantFiles(file, sets) {
		paths.add(t.path)
		r, err := tenants.read(t)
		out = append(out, watchedFile{t.path, r, err})
		if err == nil {
			secrets.addSecretFiles(t.path, r, &sets[t.entry])
		}
	}
	secrets.addSecretFiles(file, b, nil)
	for _, p := range secrets.list {
		if !paths.seen[p] {
			paths.add(p)
			r, err := readSecretFile(p, secrets.roots[p]) // as a load reads it
			out = append(out, watchedFile{p, r, err})
		}
	}
	return out
}

// readTenantFiles appends the tenants of every file tenant_files matches to c.Tenants. Each file
// holds a tenants list, as the config file does (tenants: [...]), and nothing else; problems in
// it name that file and its lines, under the tenant's place among all tenants (tenants[12]). The
// files of a delegated entry are held to its bounds (TenantFileSet).
func (c *Config) readTenantFiles() {
	d := c.Decoder
	c.checkTenantFileSets()
	entryOf := make([]int, len(c.Tenants)) // the entry each tenant came from; -1: the config file
	for i := range entryOf {
		entryOf[i] = -1
	}
	held := make([]int, len(c.TenantFiles)) // how many tenants each entry's files hold so far
	r := newTenantReader(c.File, c.TenantFiles)
	for _, tf := range tenantFiles(c.File, c.TenantFiles) {
		f, set := tf.path, &c.TenantFiles[tf.entry]
		b, err := r.read(tf)
		if err != nil {
			d.Problems = append(d.Problems, Problem{File: f, Msg: fmt.Sprintf("tenant file: %v", err)})
			continue
		}
		var root yaml.Node
		if err := yaml.Unmarshal(b, &root); err != nil {
			d.Problems = append(d.Problems, syntaxProblem(f, err))
			continue
		}
		if len(root.Content) == 0 {
			continue // an empty file: no tenants yet
		}
		n := root.Content[0]
		if n.Kind != yaml.MappingNode {
			d.Problems = append(d.Problems, Problem{File: f, Line: n.Line, Msg: "a tenant file holds a mapping with tenants: [...] alone"})
			continue
		}
		if set.Delegated {
			if d.delegated == nil {
				d.delegated = map[string]delegation{}
			}
			dl := delegation{entry: fmt.Sprintf("tenant_files[%d]", tf.entry), secrets: set.SecretFiles}
			if dl.secrets != "" {
				dl.root = linkRoot(dl.secrets)
			}
			d.delegated[f] = dl
		}
		d.decodeFile(&root, func() { c.readTenants(f, n, tf, set, held, &entryOf) })
	}
	c.checkDelegatedClientIDs(entryOf)
}

// readTenants appends the tenants of n, the mapping at the root of the tenant file f, which tf
// matched for set: held counts each entry's tenants so far, entryOf the entry of every tenant.
func (c *Config) readTenants(f string, n *yaml.Node, tf tenantFile, set *TenantFileSet, held []int, entryOf *[]int) {
	d := c.Decoder
	for k := 0; k+1 < len(n.Content); k += 2 {
		key, val := n.Content[k], n.Content[k+1]
		if key.Value != "tenants" {
			d.Problems = append(d.Problems, Problem{File: f, Line: key.Line, Path: key.Value, Msg: "unknown key in a tenant file (it holds tenants alone)"})
			continue
		}
		if val.Kind != yaml.SequenceNode {
			d.Problems = append(d.Problems, Problem{File: f, Line: val.Line, Path: "tenants", Msg: "expected a list of tenants"})
			continue
		}
		for _, tn := range val.Content {
			path := fmt.Sprintf("tenants[%d]", len(c.Tenants))
			if d.PathFiles == nil {
				d.PathFiles = map[string]string{}
			}
			d.PathFiles[path] = f
			var t Tenant
			d.Decode(tn, path, &t)
			held[tf.entry]++
			if set.Delegated {
				c.checkDelegatedTenant(tf.entry, tn, path, &t, held[tf.entry])
			}
			c.Tenants = append(c.Tenants, t)
			*entryOf = append(*entryOf, tf.entry)
			if d.left < 0 {
				break // the file's aliases spent what it may decode (decodeFile): nothing more of it
			}
		}
	}
}
