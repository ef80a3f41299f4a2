package config

import (
	"fmt"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Delegated tenant files: a tenant_files entry written as a mapping hands the files it matches to
// a team, within bounds (TenantFileSet). What a team's file could otherwise do to the others, and
// the rule that stops it:
//   - loosen what guards the shared accounts (rate_limits, allow_sender, allowed_link_hosts,
//     notify_private_addresses, accept_unrecognized_numbers): only the entry's keys may be set;
//   - open numbers of no country, the pumping rings' favourite: allowed_countries may not name 001;
//   - multiply its limits, each tenant having its own: at most max_tenants tenants;
//   - exhaust every replica's memory with one huge file: at most max_bytes (256 KiB) together, and
//     no tree of aliases (Decoder, aliasAllowance), which no file may hold;
//   - take another team's tenant name, or ride another tenant's routes by declaring its client
//     ids: names must match the entry's pattern, and a client id may not be declared outside it;
//   - read the operator's secrets: ${NAME} (the environment) is refused, and ${file:PATH} is read
//     only into api_key and previous_api_keys (values never printed) from files matching
//     secret_files. Elsewhere a problem may quote the value (as its reference, Redact, but a value
//     under 4 bytes as it is).
//   - read the operator's files through links it writes among its own: a team's files are read only
//     from under their pattern's directory once links are resolved (linkRoot, openedUnder).

// delegation bounds the references in a delegated tenant file: its entry's place
// ("tenant_files[1]"), the pattern, resolved, of the files it may read secrets from, and the
// directory they must lie under once their links are resolved (linkRoot).
type delegation struct {
	entry   string
	secrets string
	root    string
}

// refused says why the reference at path in a delegated file may not be read, or "": env is the
// variable's name (a ${NAME}), secret the resolved path of a ${file:PATH}.
func (dl delegation) refused(env, secret, at string) string {
	if env != "" {
		return fmt.Sprintf("a file of %s (a team's) may not read the environment (${%s}): it holds the operator's secrets", dl.entry, env)
	}
	if !strings.HasSuffix(at, ".api_key") && !strings.Contains(at, ".previous_api_keys[") {
		return fmt.Sprintf("a file of %s (a team's) may read a file only into api_key or previous_api_keys", dl.entry)
	}
	if ok, _ := filepath.Match(dl.secrets, filepath.Clean(secret)); dl.secrets == "" || !ok {
		return fmt.Sprintf("a file of %s (a team's) may read secrets only from files its secret_files matches; %s does not", dl.entry, secret)
	}
	return ""
}

// tenantKeys are the keys a tenant entry may hold.
func tenantKeys() map[string][]int {
	out := map[string][]int{}
	t := reflect.TypeFor[Tenant]()
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out[name] = []int{i}
		}
	}
	return out
}

// checkTenantFileSets checks the entries of tenant_files and gives delegated ones their defaults
// (secret_files resolved beside the config file).
func (c *Config) checkTenantFileSets() {
	known := tenantKeys()
	for i := range c.TenantFiles {
		s := &c.TenantFiles[i]
		at := fmt.Sprintf("tenant_files[%d]", i)
		if s.Delegated {
			at += ".path"
		}
		if s.Path == "" {
			c.Problem(at, "is required: the glob pattern of the files")
		} else if _, err := filepath.Match(s.Path, ""); err != nil {
			c.Problem(at, "%q is not a valid pattern: %v", s.Path, err)
		}
		if !s.Delegated {
			continue
		}
		p := fmt.Sprintf("tenant_files[%d]", i)
		if s.Names == "" {
			s.Names = "*"
		} else if _, err := path.Match(s.Names, ""); err != nil {
			c.Problem(p+".names", "%q is not a valid pattern: %v", s.Names, err)
		}
		if s.MaxTenants == nil {
			n := defaultMaxTenants
			s.MaxTenants = &n
		} else if *s.MaxTenants < 1 {
			c.Problem(p+".max_tenants", "must be at least 1, not %d", *s.MaxTenants)
		}
		if s.MaxBytes == nil {
			n := defaultMaxBytes
			s.MaxBytes = &n
		} else if *s.MaxBytes < minMaxBytes || *s.MaxBytes > maxTenantFile {
			c.Problem(p+".max_bytes", "must be from %d to %d (%d MiB), not %d", minMaxBytes, maxTenantFile, maxTenantFile>>20, *s.MaxBytes)
		}
		if s.Keys == nil {
			s.Keys = DelegatedKeys
		}
		for j, k := range s.Keys {
			if _, ok := known[k]; !ok {
				c.Problem(fmt.Sprintf("%s.keys[%d]", p, j), "unknown tenant key %q%s", k, suggest(k, known))
			}
		}
		if s.SecretFiles != "" {
			if _, err := filepath.Match(s.SecretFiles, ""); err != nil {
				c.Problem(p+".secret_files", "%q is not a valid pattern: %v", s.SecretFiles, err)
			}
			s.SecretFiles = secretFilesPattern(c.File, s.SecretFiles)
		}
	}
}

// checkDelegatedTenant holds the tenant t, decoded from node n at path in a file of the delegated
// entry, to the entry's keys, names, max_tenants and countries; held is how many tenants the
// entry's files hold with t.
func (c *Config) checkDelegatedTenant(entry int, n *yaml.Node, at string, t *Tenant, held int) {
	s := &c.TenantFiles[entry]
	e := fmt.Sprintf("tenant_files[%d]", entry)
	for n.Kind == yaml.AliasNode && n.Alias != nil { // - *t: the tenant it names, as decoded
		n = n.Alias
	}
	if n.Kind == yaml.MappingNode {
		for k := 0; k+1 < len(n.Content); k += 2 {
			key := n.Content[k].Value
			if key != "name" && key != "api_key" && !slices.Contains(s.Keys, key) {
				c.Problem(at+"."+key, "a file of %s (a team's) may not set %s; its keys: name, api_key, %s", e, key, strings.Join(s.Keys, ", "))
			}
		}
	}
	if ok, err := path.Match(s.Names, t.Name); !ok && err == nil && t.Name != "" {
		c.Problem(at+".name", "%q does not match %s.names (%q)", t.Name, e, s.Names)
	}
	if held == *s.MaxTenants+1 && *s.MaxTenants > 0 {
		c.Problem(at, "the files of %s hold more than %d tenants (max_tenants): each tenant has limits of its own", e, *s.MaxTenants)
	}
	if i := slices.Index(t.AllowedCountries, NonGeographic); i >= 0 {
		c.Problem(fmt.Sprintf("%s.allowed_countries[%d]", at, i), "a file of %s (a team's) may not allow %s, numbers of no country: only the operator's files may", e, NonGeographic)
	}
}

// checkDelegatedClientIDs refuses a client id that a tenant of a delegated entry declares and a
// tenant from elsewhere declares too: declaring it would make the other tenant's routes for it
// this one's (routes' match.client_ids). entryOf holds the entry each tenant came from, -1 for
// the config file.
func (c *Config) checkDelegatedClientIDs(entryOf []int) {
	owners := map[string][]int{}
	for i, t := range c.Tenants {
		for _, id := range t.ClientIDs {
			if !slices.Contains(owners[id], entryOf[i]) {
				owners[id] = append(owners[id], entryOf[i])
			}
		}
	}
	for i, t := range c.Tenants {
		if entryOf[i] < 0 || !c.TenantFiles[entryOf[i]].Delegated {
			continue
		}
		for j, id := range t.ClientIDs {
			if len(owners[id]) > 1 {
				c.Problem(fmt.Sprintf("tenants[%d].client_ids[%d]", i, j), "client id %q is declared by a tenant outside the files of tenant_files[%d] too: a team's file may declare only its own", id, entryOf[i])
			}
		}
	}
}
