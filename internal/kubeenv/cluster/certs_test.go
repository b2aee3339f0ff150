package cluster

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"
)

func testLayout(t *testing.T) Layout {
	t.Helper()
	l, err := DefaultLayout()
	if err != nil {
		t.Fatal(err)
	}
	l.NodeName = "node-1"
	l.CacheDir = t.TempDir()
	l.StateDir = t.TempDir()
	l.RunDir = "/run/test-kube"
	return l
}

func TestIssue(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "test-ca" {
		t.Fatalf("CA: IsCA=%v CN=%q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	tests := []struct {
		name    string
		spec    CertSpec
		usage   []x509.ExtKeyUsage // each must verify
		notUsed []x509.ExtKeyUsage // each must not
		dns     string             // verifies for this name (server certs)
		wantErr bool
	}{
		{
			name:    "server",
			spec:    CertSpec{Name: "s", CommonName: "srv", DNSNames: []string{"localhost", "vm"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true},
			usage:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			notUsed: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			dns:     "vm",
		},
		{
			name:    "client with groups",
			spec:    CertSpec{Name: "c", CommonName: "system:node:vm", Organization: []string{"system:nodes"}, Client: true},
			usage:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			notUsed: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		},
		{
			name:  "both",
			spec:  CertSpec{Name: "b", CommonName: "both", DNSNames: []string{"localhost"}, Server: true, Client: true},
			usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			dns:   "localhost",
		},
		{name: "neither", spec: CertSpec{Name: "n", CommonName: "n"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.Issue(tt.spec, now)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Issue succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
				t.Fatalf("PEM pair does not load: %v", err)
			}
			c := kp.Cert
			if c.Subject.CommonName != tt.spec.CommonName || !slices.Equal(c.Subject.Organization, tt.spec.Organization) {
				t.Errorf("subject = %v, want CN=%s O=%v", c.Subject, tt.spec.CommonName, tt.spec.Organization)
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if !c.NotBefore.Before(now) || !c.NotAfter.After(now.Add(300*24*time.Hour)) {
				t.Errorf("validity %s .. %s", c.NotBefore, c.NotAfter)
			}
			for _, u := range tt.usage {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.dns, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for %v: %v", u, err)
				}
			}
			for _, u := range tt.notUsed {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
					t.Errorf("verifies for %v, want not", u)
				}
			}
			for _, ip := range tt.spec.IPs {
				if err := c.VerifyHostname(ip.String()); err != nil {
					t.Errorf("IP SAN: %v", err)
				}
			}
		})
	}
}

func TestNewPKI(t *testing.T) {
	l := testLayout(t)
	p, err := NewPKI(l, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Cert)
	tests := []struct {
		cert   string
		cn     string
		org    string
		server []string // host names and IPs it must serve
	}{
		{cert: certAPIServer, cn: "kube-apiserver",
			server: []string{"127.0.0.1", "localhost", "node-1", "10.96.0.1", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{cert: certKubeletServer, cn: "node-1", server: []string{"node-1", "127.0.0.1"}},
		{cert: certKubeletClient, cn: "system:node:node-1", org: "system:nodes"},
		{cert: certAPIServerKubelet, cn: "kube-apiserver-kubelet-client", org: "system:masters"},
		{cert: certControllerManager, cn: "system:kube-controller-manager"},
		{cert: certScheduler, cn: "system:kube-scheduler"},
		{cert: certAdmin, cn: "opensbx-admin", org: "system:masters"},
	}
	if len(p.Certs) != len(tests) {
		t.Errorf("%d certificates, want %d", len(p.Certs), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.cert, func(t *testing.T) {
			kp := p.Certs[tt.cert]
			if kp == nil {
				t.Fatal("missing")
			}
			if kp.Cert.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", kp.Cert.Subject.CommonName, tt.cn)
			}
			if tt.org != "" && !slices.Equal(kp.Cert.Subject.Organization, []string{tt.org}) {
				t.Errorf("O = %v, want %s", kp.Cert.Subject.Organization, tt.org)
			}
			usage := x509.ExtKeyUsageClientAuth
			if tt.server != nil {
				usage = x509.ExtKeyUsageServerAuth
			}
			if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			for _, h := range tt.server {
				if err := kp.Cert.VerifyHostname(h); err != nil {
					t.Errorf("serves %s: %v", h, err)
				}
			}
		})
	}
	// The service-account keys are a pair.
	priv, _ := pem.Decode(p.SAKeyPEM)
	pub, _ := pem.Decode(p.SAPubPEM)
	if priv == nil || pub == nil {
		t.Fatal("service-account PEM does not decode")
	}
	k, err := x509.ParsePKCS8PrivateKey(priv.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.ParsePKIXPublicKey(pub.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*ecdsa.PrivateKey).PublicKey.Equal(pk) {
		t.Error("service-account public key does not match the private key")
	}

	dir := t.TempDir()
	if err := p.Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(dir+"/admin.crt", dir+"/admin.key"); err != nil {
		t.Errorf("written admin pair: %v", err)
	}
}

func TestFirstServiceIP(t *testing.T) {
	tests := []struct {
		subnet, want string
	}{
		{"10.96.0.0/24", "10.96.0.1"},
		{"10.96.0.0/12", "10.96.0.1"},
		{"192.168.4.0/22", "192.168.4.1"},
		{"fd00::/108", "<nil>"},
		{"bogus", "<nil>"},
	}
	for _, tt := range tests {
		if got := firstServiceIP(tt.subnet).String(); got != tt.want {
			t.Errorf("firstServiceIP(%q) = %s, want %s", tt.subnet, got, tt.want)
		}
	}
}
