package config

import (
	"cmp"
	"encoding"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a config file, located by line and key path.
type Problem struct {
	File string
	Line int
	Path string
	Msg  string
}

// String formats the problem as FILE:LINE: path.to.key: message.
func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Path == "" {
		return loc + ": " + p.Msg
	}
	return loc + ": " + p.Path + ": " + p.Msg
}

// Problems is every problem found in a config; it is an error when not empty.
type Problems []Problem

// Error lists the problems one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// ProblemLines bounds the problems a rejected reload's log line and the admin API's answer hold.
const ProblemLines = 100

// Lines are the first max problems, one a line, and then how many more there are: for a log line
// or an answer, which a file of many thousand problems (a tenant file of as many broken tenants)
// must not fill. smsgate validate lists them all.
func (ps Problems) Lines(max int) []string {
	lines := make([]string, 0, min(len(ps), max)+1)
	for i, p := range ps {
		if i == max {
			lines = append(lines, fmt.Sprintf("and %d problem(s) more: smsgate validate lists them all", len(ps)-max))
			break
		}
		lines = append(lines, p.String())
	}
	return lines
}

// Sort orders problems by line, keeping the order of problems on one line.
func (ps Problems) Sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
}

// Decoder decodes YAML nodes into structs strictly: an unknown key is a problem, ${VAR} is
// expanded from the environment (an unset VAR is a problem) and ${file:PATH} from a file (one that
// cannot be read is a problem), and every problem is collected
// with its line and key path instead of stopping at the first.
type Decoder struct {
	// File names the config file in problems.
	File string
	// Getenv looks variables up; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// Problems collects what went wrong.
	Problems Problems
	// Lines maps a key path ("providers[0].name") to its line, for later validation messages.
	Lines map[string]int
	// PathFiles maps a key path ("tenants[3]") to the file it was read from where that is not
	// File (tenant_files); problems under it, and its ${file:...} references, go by that file.
	PathFiles map[string]string
	// delegated holds the bounds of the references in each delegated tenant file (tenant_files).
	delegated map[string]delegation
	// refs maps each value a reference was replaced by to its reference, for Redact; redact is
	// built from it when it is first needed after a change.
	refs   map[string]string
	redact *strings.Replacer
	// Unread, when set, reads no reference: ${NAME} and ${file:PATH} each give a placeholder, the
	// keys holding one are recorded, and problems at those keys are dropped (DropUnjudged), as
	// what the reference would read cannot be judged. For a check where the secrets are not (a
	// CI job, a team's pipeline checking its tenant file): smsgate validate --without-secrets.
	Unread bool
	// unread are the key paths whose values hold a reference that was not read.
	unread map[string]bool
	// left is how many more values the tree being decoded may give (Decode, aliasAllowance), and
	// inFile says that it is a whole file's, decoded in parts (decodeFile).
	left   int
	inFile bool
	// problemAt holds the paths of the first indexed problems, for HasProblem.
	problemAt map[string]bool
	indexed   int
	// empty are the key paths written with no value (`key:`), which Given does not count.
	empty map[string]bool
}

// Given reports whether the file gives the key at path a value: a key written with none (`key:`)
// is not given, and takes its default as one left out does.
func (d *Decoder) Given(path string) bool {
	_, ok := d.Lines[path]
	return ok && !d.empty[path]
}

// HasProblem reports whether a problem names path, at the cost of a map look-up: a check asked
// for each of many thousand tenants must not read every problem found so far each time.
func (d *Decoder) HasProblem(path string) bool {
	if d.problemAt == nil { // none yet, or problems were dropped (DropUnjudged): index them anew
		d.problemAt = map[string]bool{}
	}
	for ; d.indexed < len(d.Problems); d.indexed++ {
		d.problemAt[d.Problems[d.indexed].Path] = true
	}
	return d.problemAt[path]
}

// placeholder is what an unread reference gives: itself, marked, so that two references differ
// as their values would.
func placeholder(ref string) string { return "unread:" + ref }

// DropUnjudged removes the problems at keys whose values hold a reference that was not read
// (Unread), and returns how many keys hold one.
func (d *Decoder) DropUnjudged() int {
	d.Problems = slices.DeleteFunc(d.Problems, func(p Problem) bool { return d.Unjudged(p.Path) })
	d.problemAt, d.indexed = nil, 0
	return len(d.unread)
}

// Unjudged reports whether the key at path, or one it lies under, holds a reference that was
// not read (Unread).
func (d *Decoder) Unjudged(path string) bool {
	_, ok := nearest(d.unread, path)
	return ok
}

// minRedacted is the shortest value Redact hides: a shorter one is no secret (a country, a
// duration), and hiding it would garble every message it occurs in.
const minRedacted = 4

// Redact replaces in s every value of at least minRedacted bytes that a reference was replaced
// by with the reference itself, so that a problem or a warning that quotes a value it found
// wrong never prints a secret read from the environment or a file: an API key put in the wrong
// key by mistake (base_url: ${INFOBIP_API_KEY}) would otherwise reach the CI's output and the
// replica's log with the problem. One pass over s, whatever the number of references (a config
// of 40,000 tenants reads as many keys, and may have as many problems).
func (d *Decoder) Redact(s string) string {
	if len(d.refs) == 0 {
		return s
	}
	if d.redact == nil {
		values := make([]string, 0, len(d.refs))
		for v := range d.refs {
			values = append(values, v)
		}
		// Where two values match at one place, the replacer takes the first listed: the longer,
		// so that a value holding another is replaced whole.
		slices.SortFunc(values, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
		pairs := make([]string, 0, 2*len(values))
		for _, v := range values {
			pairs = append(pairs, v, d.refs[v])
		}
		d.redact = strings.NewReplacer(pairs...)
	}
	return d.redact.Replace(s)
}

// RedactProblems applies Redact to every problem's message.
func (d *Decoder) RedactProblems() {
	for i := range d.Problems {
		d.Problems[i].Msg = d.Redact(d.Problems[i].Msg)
	}
}

// remember records that ref was replaced by value, for Redact.
func (d *Decoder) remember(value, ref string) {
	if len(value) < minRedacted {
		return
	}
	if d.refs == nil {
		d.refs = map[string]string{}
	}
	if _, ok := d.refs[value]; !ok {
		d.refs[value] = ref
		d.redact = nil
	}
}

// Add records a problem at line for path, in the file path was read from.
func (d *Decoder) Add(line int, path, format string, args ...any) {
	d.Problems = append(d.Problems, Problem{File: d.fileOf(path), Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fileOf is the file path, or its nearest parent, was read from: File, but for the tenants read
// from tenant_files.
func (d *Decoder) fileOf(path string) string {
	if f, ok := nearest(d.PathFiles, path); ok {
		return f
	}
	return d.File
}

// Where is FILE:LINE of path, for a warning about it: the file it was read from (the config file,
// or a tenant file) and its line there.
func (d *Decoder) Where(path string) string {
	return fmt.Sprintf("%s:%d", d.fileOf(path), d.Line(path))
}

// Line returns the recorded line of path, or of its nearest recorded parent.
func (d *Decoder) Line(path string) int {
	l, _ := nearest(d.Lines, path)
	return l
}

// nearest is m's value for path or, failing that, for its nearest parent in m
// ("tenants[3].pumping.action", "tenants[3].pumping", "tenants[3]", "tenants").
func nearest[T any](m map[string]T, path string) (T, bool) {
	for path != "" {
		if v, ok := m[path]; ok {
			return v, true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	var zero T
	return zero, false
}

// ref is a reference in a value: ${NAME}, an environment variable, or ${file:PATH}, a file's
// content (a secret mounted as a file: a Kubernetes Secret volume, a Docker secret).
var ref = regexp.MustCompile(`\$\{(?:([A-Za-z_][A-Za-z0-9_]*)|file:([^}]+))\}`)

func (d *Decoder) expand(n *yaml.Node, path string) string {
	if !strings.Contains(n.Value, "${") {
		return n.Value
	}
	get := d.Getenv
	if get == nil {
		get = os.LookupEnv
	}
	return ref.ReplaceAllStringFunc(n.Value, func(m string) string {
		sub := ref.FindStringSubmatch(m)
		secret, root := "", ""
		if sub[1] == "" {
			secret = besideFile(d.fileOf(path), sub[2])
		}
		if dl, ok := d.delegated[d.fileOf(path)]; ok {
			if msg := dl.refused(sub[1], secret, path); msg != "" {
				d.Add(n.Line, path, "%s", msg)
				return ""
			}
			root = dl.root
		}
		if d.Unread {
			if d.unread == nil {
				d.unread = map[string]bool{}
			}
			d.unread[path] = true
			return placeholder(m)
		}
		if sub[1] != "" {
			v, ok := get(sub[1])
			if !ok {
				d.Add(n.Line, path, "environment variable %s is not set", sub[1])
			}
			d.remember(v, m)
			return v
		}
		v, err := readSecret(secret, root)
		if err != nil {
			d.Add(n.Line, path, "%v", err)
		}
		d.remember(v, m)
		return v
	})
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodePtrType     = reflect.TypeFor[*yaml.Node]()
)

// Decode decodes n into out (a pointer), recording problems under path.
func (d *Decoder) Decode(n *yaml.Node, path string, out any) {
	if !d.inFile {
		d.left = 2*nodes(n) + aliasAllowance
	}
	d.decode(n, path, reflect.ValueOf(out).Elem())
}

// decodeFile runs decode, which decodes parts of the file whose tree is root one by one (a tenant
// file, tenant by tenant), within one budget for the whole file: an alias of a part to another
// part draws on it.
func (d *Decoder) decodeFile(root *yaml.Node, decode func()) {
	d.left, d.inFile = 2*nodes(root)+aliasAllowance, true
	defer func() { d.inFile = false }()
	decode()
}

// aliasAllowance is how many more values than twice its own a YAML tree may decode into through
// its aliases: enough for lists and settings shared by alias (&eu, *eu), never a tree of aliases
// of aliases, which grows with the square or the power of its size (a few KiB of `- *t` lines,
// each a tenant with a long list, decoded into billions of values and held every replica's reload
// until it was killed for its memory).
const aliasAllowance = 100_000

// nodes counts the nodes of the tree n as written: an alias counts one, what it names is not
// counted again.
func nodes(n *yaml.Node) int {
	c := 1
	for _, x := range n.Content {
		c += nodes(x)
	}
	return c
}

func (d *Decoder) record(path string, line int) {
	if d.Lines == nil {
		d.Lines = map[string]int{}
	}
	d.Lines[path] = line
}

func (d *Decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if d.left--; d.left < 0 {
		if d.left == -1 {
			d.Add(n.Line, path, "the file's aliases (*name) expand to more values than %d beyond twice its own: it is not read further", aliasAllowance)
		}
		return
	}
	for n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.record(path, n.Line)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		if d.empty == nil {
			d.empty = map[string]bool{}
		}
		d.empty[path] = true
		return // an empty value keeps the zero value (and the default applied later)
	}
	if v.Type() == nodePtrType {
		v.Set(reflect.ValueOf(n))
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, path, v.Elem())
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.Add(n.Line, path, "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(d.expand(n, path))); err != nil {
			d.Add(n.Line, path, "invalid value %q: %v", n.Value, err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.Add(n.Line, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.Add(n.Line, path, "expected a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if d.twice(seen, k, join(path, k.Value)) {
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, join(path, k.Value), ev)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			d.Add(n.Line, path, "expected a single value, got %s", kindName(n))
			return
		}
		c := *n
		c.Value = d.expand(n, path)
		if c.Value != n.Value {
			c.Tag = "" // let yaml re-resolve the expanded value's type
			c.Style = 0
		}
		if err := c.Decode(v.Addr().Interface()); err != nil {
			d.Add(n.Line, path, "invalid value %q: expected %s", n.Value, typeName(v.Type()))
			return
		}
		// YAML's .nan and .inf are floats, and NaN passes every range check written as a
		// comparison (a price of .nan emptied the spend bucket it was charged to): no key takes one.
		if k := v.Kind(); (k == reflect.Float64 || k == reflect.Float32) && (math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0)) {
			d.Add(n.Line, path, "invalid value %q: expected a finite number", n.Value)
		}
	}
}

// decodeStruct decodes a mapping into v. A struct with a field tagged smsgate:"scalar" takes a
// single value too, as that field (a tenant_files entry: a pattern, or a mapping with its path);
// a bool field tagged smsgate:"mapped" says which form it came in.
func (d *Decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.ScalarNode {
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("smsgate") == "scalar" {
				d.decode(n, path, v.Field(i))
				return
			}
		}
	}
	if n.Kind != yaml.MappingNode {
		d.Add(n.Line, path, "expected a mapping, got %s", kindName(n))
		return
	}
	var rest reflect.Value
	// fields maps a key to its field's index path: embedded structs tagged ",inline" lend theirs.
	fields := map[string][]int{}
	var collect func(t reflect.Type, prefix []int)
	collect = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			idx := append(append([]int(nil), prefix...), i)
			switch f.Tag.Get("smsgate") {
			case "rest":
				rest = v.FieldByIndex(idx)
				continue
			case "mapped":
				v.FieldByIndex(idx).SetBool(true)
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if opts == "inline" && f.Type.Kind() == reflect.Struct {
				collect(f.Type, idx)
				continue
			}
			if name == "-" || name == "" {
				continue
			}
			fields[name] = idx
		}
	}
	collect(v.Type(), nil)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if d.twice(seen, k, p) {
			continue
		}
		if fi, ok := fields[k.Value]; ok {
			d.decode(val, p, v.FieldByIndex(fi))
			continue
		}
		if rest.IsValid() {
			if rest.IsNil() {
				rest.Set(reflect.MakeMap(rest.Type()))
			}
			rest.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val))
			d.record(p, k.Line)
			continue
		}
		d.Add(k.Line, p, "unknown key %q%s", k.Value, suggest(k.Value, fields))
	}
}

// twice reports, as a problem, a key that its mapping gave before (seen: the keys read so far and
// their lines). yaml.v3 keeps such a mapping as it is written, and reading it as the YAML would
// have kept one of the two values silently: an operator who pasted a second rate_limits or
// allowed_countries under a tenant had the first ignored without a word.
func (d *Decoder) twice(seen map[string]int, k *yaml.Node, path string) bool {
	if first, ok := seen[k.Value]; ok {
		d.Add(k.Line, path, "given twice in one mapping (first on line %d): remove one", first)
		return true
	}
	seen[k.Value] = k.Line
	return false
}

func suggest(key string, fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// DecodeOptions decodes a provider's driver-specific keys (Provider.Options) into out, a pointer
// to the driver's config struct, recording problems under providers[i].
func (c *Config) DecodeOptions(i int, out any) {
	p := c.Providers[i]
	path := fmt.Sprintf("providers[%d]", i)
	keys := make([]string, 0, len(p.Options))
	for k := range p.Options {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	m := &yaml.Node{Kind: yaml.MappingNode, Line: c.Decoder.Line(path)}
	for _, k := range keys {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k, Line: c.Decoder.Line(path + "." + k)}, p.Options[k])
	}
	c.Decoder.Decode(m, path, out)
}
