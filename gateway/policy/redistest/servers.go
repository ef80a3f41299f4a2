package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TLS names the files of a CA made for a test and of a certificate it signed for 127.0.0.1 (and
// redis.test), which redis-server uses as its own: to take TLS connections, and to make them to
// the servers it reaches (a Sentinel to the primary).
type TLS struct{ CAFile, CertFile, KeyFile string }

// NewTLS makes a CA and a certificate for a test, valid for a day.
func NewTLS(t testing.TB) TLS {
	t.Helper()
	return NewTLSFor(t, 24*time.Hour)
}

// NewTLSFor is NewTLS with certificates that expire after valid.
func NewTLSFor(t testing.TB, valid time.Duration) TLS {
	t.Helper()
	dir := t.TempDir()
	f := TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"redis.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{f.CAFile: {Type: "CERTIFICATE", Bytes: caDER},
		f.CertFile: {Type: "CERTIFICATE", Bytes: leafDER}, f.KeyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// args are redis-server's arguments to take TLS connections only, on port, and to make its own
// over TLS too.
func (f TLS) args(port string) []string {
	return []string{"--port", "0", "--tls-port", port, "--tls-cert-file", f.CertFile, "--tls-key-file", f.KeyFile,
		"--tls-ca-cert-file", f.CAFile, "--tls-auth-clients", "no", "--tls-replication", "yes"}
}

// TLSServer starts a private redis-server that takes TLS connections only (on a free loopback
// port), with a certificate of NewTLS, and returns its address and the certificate's files. args
// come after its own (such as "--tls-auth-clients", "yes": then it asks clients for a certificate
// the CA signed, as redis.conf does by default). It skips or fails the test like Start.
func TLSServer(t testing.TB, args ...string) (addr string, f TLS) {
	t.Helper()
	f = NewTLS(t)
	addr, _ = onFreePort(t, f.Client(t), func(addr, port string) (func(), error) {
		return tryStart(t, addr, append(f.args(port), args...)...)
	})
	return addr, f
}

// Sentinel starts a private Redis Sentinel on a free loopback port that monitors the primary at
// primaryAddr under name (a quorum of one, so that it alone can fail the primary over), and
// returns its address. With tls, it takes TLS connections only and reaches the servers over TLS.
func Sentinel(t testing.TB, primaryAddr, name string, f *TLS) string {
	t.Helper()
	host, pport, _ := net.SplitHostPort(primaryAddr)
	var client *tls.Config
	if f != nil {
		client = f.Client(t)
	}
	addr, _ := onFreePort(t, client, func(addr, port string) (func(), error) {
		// Sentinel rewrites its config file, so it gets one of its own.
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		text := "port " + port + "\n"
		if f != nil {
			args := f.args(port)
			text = ""
			for i := 0; i < len(args); i += 2 {
				text += strings.TrimPrefix(args[i], "--") + " " + args[i+1] + "\n"
			}
		}
		text += "bind 127.0.0.1\nsentinel monitor " + name + " " + host + " " + pport + " 1\n" +
			"sentinel down-after-milliseconds " + name + " 1000\nsentinel failover-timeout " + name + " 5000\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return launch(t, addr, conf, "--sentinel")
	})
	return addr
}

// Replica starts a private redis-server on a free loopback port as a replica of the primary at
// primaryAddr, and returns its address once it has copied the primary's data. That takes 5 s:
// Redis 7 waits as long for more replicas before it sends its copy (repl-diskless-sync-delay),
// which the wait here, until this stop 5 s counted in steps, met only by the time its own steps
// took beyond it. (With that delay at 0, Redis 7.0 left a replica online that then received none
// of the primary's writes, one run in three.)
func Replica(t testing.TB, primaryAddr string) string {
	t.Helper()
	ctx := context.Background()
	host, pport, _ := net.SplitHostPort(primaryAddr)
	addr, _ := onFreePort(t, nil, func(addr, port string) (func(), error) {
		return tryStart(t, addr, serverArgs(port, "--replicaof", host, pport)...)
	})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		info, _ := c.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return addr
		} else if time.Now().After(deadline) {
			t.Fatalf("the replica on %s did not reach its primary: %s", addr, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr is a free loopback host:port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts redis-server on addr with args (which name its port) after the defaults of every
// server here: loopback only, nothing persisted, and a working directory of the test's own (a
// replica writes the data it copies there, and would leave a dump.rdb in the package).
func start(t testing.TB, addr string, args ...string) (stop func()) {
	t.Helper()
	stop, err := tryStart(t, addr, args...)
	if err != nil {
		t.Fatal(err)
	}
	return stop
}

// tryStart is start, saying why the server did not start instead of failing the test.
func tryStart(t testing.TB, addr string, args ...string) (stop func(), err error) {
	t.Helper()
	return launch(t, addr, append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)...)
}

// onFreePort runs run (which starts a server on addr, port being addr's) for a free loopback
// address, and returns the address once the server answers PING (over TLS with client, when not
// nil; a refusal such as NOAUTH is an answer too). A port is free when picked, but a test of
// another package running beside this one may take it, or a cluster bus port run picks, before
// redis-server binds it: the server then exits, or another process answers at the address (a
// cluster's CLUSTER ADDSLOTSRANGE got EOF). redis-server answers only once it has bound every
// port, so one that does not starts again on other ports, up to three times.
func onFreePort(t testing.TB, client *tls.Config, run func(addr, port string) (stop func(), err error)) (addr string, stop func()) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr = freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		var err error
		if stop, err = run(addr, port); err == nil {
			c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: client, MaxRetries: -1})
			err = c.Ping(context.Background()).Err()
			c.Close()
			var refused redis.Error
			if err == nil || errors.As(err, &refused) {
				return addr, stop
			}
			stop()
		}
		if attempt == 3 {
			t.Fatalf("redis-server on %s does not answer: %v", addr, err)
		}
	}
}

// Client is the TLS configuration of a client of f's servers: it trusts f's CA and shows f's
// certificate, which is also a client's, to a server that asks for one.
func (f TLS) Client(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}
}

// launch runs redis-server with args until the test ends (or stop), once addr takes connections;
// it says why the server did not start (it exited first, or addr took no connection within 3 s).
func launch(t testing.TB, addr string, args ...string) (stop func(), err error) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop = func() { once.Do(func() { cmd.Process.Kill(); <-exited }) }
	t.Cleanup(stop)
	for i := 0; ; i++ {
		select {
		case <-exited:
			return stop, fmt.Errorf("redis-server %v exited before %s took connections", args, addr)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop, nil
		} else if i > 300 {
			stop()
			return stop, fmt.Errorf("redis-server %v did not start on %s", args, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cluster starts a private Redis Cluster of n primaries (no replicas) on free loopback ports,
// the slots split evenly between them, and returns their addresses once every node sees the
// cluster whole (cluster_state:ok). It skips or fails the test like Start.
func Cluster(t testing.TB, n int) []string {
	t.Helper()
	primaries, _ := cluster(t, n, false, nil)
	return addrsOf(primaries)
}

// TLSCluster is Cluster over TLS only, clients' connections and the cluster's bus alike, with a
// certificate of NewTLS, whose files it returns.
func TLSCluster(t testing.TB, n int) ([]string, TLS) {
	t.Helper()
	f := NewTLS(t)
	primaries, _ := cluster(t, n, false, &f)
	return addrsOf(primaries), f
}

func addrsOf(nodes []Node) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Node is a node of a test's Redis Cluster: its address and the function that kills it.
type Node struct {
	Addr string
	Kill func()
}

// ClusterWithReplicas is Cluster with a replica of each primary (replicas[i] of primaries[i]),
// returned once each replica has copied its primary.
func ClusterWithReplicas(t testing.TB, n int) (primaries, replicas []Node) {
	t.Helper()
	return cluster(t, n, true, nil)
}

func cluster(t testing.TB, n int, withReplicas bool, tlsFiles *TLS) (primaries, replicas []Node) {
	t.Helper()
	nodes := n
	if withReplicas {
		nodes = 2 * n
	}
	ctx := context.Background()
	var tlsConfig *tls.Config
	if tlsFiles != nil {
		tlsConfig = tlsFiles.Client(t)
	}
	all, buses := make([]Node, nodes), make([]string, nodes)
	for i := range all {
		all[i].Addr, all[i].Kill = onFreePort(t, tlsConfig, func(addr, port string) (func(), error) {
			_, buses[i], _ = net.SplitHostPort(freeAddr(t)) // not port+10000, which may pass 65535
			args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", buses[i], "--cluster-node-timeout", "2000"}
			if tlsFiles != nil {
				return tryStart(t, addr, append(append(tlsFiles.args(port), "--tls-cluster", "yes"), args...)...)
			}
			return tryStart(t, addr, serverArgs(port, args...)...)
		})
	}
	clients := make([]*redis.Client, nodes)
	for i, node := range all {
		clients[i] = redis.NewClient(&redis.Options{Addr: node.Addr, TLSConfig: tlsConfig})
		defer clients[i].Close()
		if i < n {
			from, to := i*16384/n, (i+1)*16384/n-1
			if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", from, to).Err(); err != nil {
				t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", node.Addr, err)
			}
		}
		if i > 0 {
			host, port, _ := net.SplitHostPort(node.Addr)
			if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port, buses[i]).Err(); err != nil {
				t.Fatalf("CLUSTER MEET %s: %v", node.Addr, err)
			}
		}
	}
	formed := func(c *redis.Client) bool {
		info, _ := c.ClusterInfo(ctx).Result()
		return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(nodes)+"\r")
	}
	waitUntil(t, "the cluster forms", func() bool { return each(clients, formed) })
	for i := n; i < nodes; i++ {
		id, err := clients[i-n].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		// The replica must know the primary's id first; MEET told it, the gossip may lag.
		waitUntil(t, "the replica takes its primary", func() bool {
			return clients[i].Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
		})
	}
	waitUntil(t, "the replicas copy their primaries", func() bool {
		return each(clients[n:], func(c *redis.Client) bool {
			info, _ := c.Info(ctx, "replication").Result()
			return strings.Contains(info, "master_link_status:up")
		}) && each(clients, formed)
	})
	return all[:n], all[n:]
}

// each reports whether ok holds for every client.
func each(cs []*redis.Client, ok func(*redis.Client) bool) bool {
	for _, c := range cs {
		if !ok(c) {
			return false
		}
	}
	return true
}

// waitUntil polls ok every 10 ms for up to 20 s, and fails the test if it never holds.
func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for i := 0; !ok(); i++ {
		if i > 2000 {
			t.Fatalf("redistest: %s: not within 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
