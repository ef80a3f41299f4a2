package gateway

import (
	"net/netip"
	"testing"
)

// TestPublicAddr: every address a tenant could aim a push at inside the operator's network is
// refused, however it is written; public addresses pass.
func TestPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"93.184.215.14", true},
		{"8.8.8.8", true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true},
		{"172.32.0.1", true},  // just past 172.16/12
		{"100.128.0.1", true}, // just past 100.64/10
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.0.0.5", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"fd00::1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"ff01::1", false},         // interface-local multicast
		{"224.0.0.251", false},     // link-local multicast (mDNS)
		{"100.100.100.200", false}, // a metadata service in the carrier-grade NAT space
		{"192.0.0.170", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false}, // the benchmarking range is a /15
		{"198.20.0.1", true},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:100.100.100.200", false}, // a range netip does not name, written as IPv6
		{"239.255.0.1", false},            // multicast beyond the link-local block
		{"ff05::1:3", false},
		{"64:ff9b::a9fe:a9fe", false}, // 169.254.169.254 through NAT64
		{"64:ff9b::808:808", true},    // 8.8.8.8 through NAT64
	} {
		if got := PublicAddr(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("PublicAddr(%s) = %v, want %v", tc.addr, got, tc.public)
		}
	}
	if PublicAddr(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
}

func TestPublicHost(t *testing.T) {
	for host, public := range map[string]bool{
		"hooks.example.com":  true,
		"93.184.215.14":      true,
		"localhost":          false,
		"LocalHost.":         false,
		"api.localhost":      false,
		"127.0.0.1":          false,
		"[::1]":              false,
		"::ffff:10.0.0.1":    false,
		"notlocalhost.com":   true,
		"169.254.169.254":    false,
		"metadata.internal.": true, // a name: only what it resolves to can tell
	} {
		if got := PublicHost(host); got != public {
			t.Errorf("PublicHost(%q) = %v, want %v", host, got, public)
		}
	}
}

func TestDefaultPort(t *testing.T) {
	for scheme, want := range map[string]string{"https": "443", "http": "80", "ftp": "", "": ""} {
		if got := DefaultPort(scheme); got != want {
			t.Errorf("DefaultPort(%q) = %q, want %q", scheme, got, want)
		}
	}
}
