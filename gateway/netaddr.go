package gateway

import (
	"net/netip"
	"strings"
)

// notPublic are the IPv4 ranges, beyond what netip.Addr's methods name, that no host on the
// internet has: "this network", the carrier-grade NAT space some clouds put their own services in
// (100.100.100.200 is a metadata service), the IETF's protocol assignments, the benchmarking
// range, the reserved 240/4 and the broadcast address.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// nat64 is the well-known NAT64 prefix: an address in it reaches the IPv4 address in its last 32
// bits, which is what must be public.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// PublicAddr reports whether ip is an address a host on the public internet may have: not
// loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, where cloud
// metadata services answer, and fe80::/10), unspecified, multicast or one of the reserved ranges
// above. An IPv4 address written as IPv6 (::ffff:a.b.c.d, or through the NAT64 prefix) is judged
// as the IPv4 address it reaches.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	// IsMulticast covers the link-local and interface-local multicast blocks.
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// PublicHost reports whether host (a name or an address, without a port) may name a public host
// as written: an address is judged by PublicAddr, and "localhost" (and any name under it) is
// never public. Any other name may be; only the address it resolves to can tell.
func PublicHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return PublicAddr(ip)
	}
	return true
}

// DefaultPort is the port a URL of scheme names when it names none: "443" for https, "80" for
// http, "" for any other scheme.
func DefaultPort(scheme string) string {
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}
