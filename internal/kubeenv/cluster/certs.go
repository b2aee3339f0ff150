package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certLifetime is how long every certificate of a throw-away cluster is valid.
const certLifetime = 365 * 24 * time.Hour

// certBackdate moves NotBefore back, for clocks a little behind.
const certBackdate = time.Hour

// KeyPair is a certificate with its private key, PEM encoded.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS #8
}

// CertSpec describes one certificate the cluster CA issues.
type CertSpec struct {
	Name         string   // file base name in the PKI directory: Name.crt, Name.key
	CommonName   string   // the user name, for client certificates
	Organization []string // the groups, for client certificates
	DNSNames     []string // server certificates only
	IPs          []net.IP // server certificates only
	Server       bool     // ExtKeyUsageServerAuth
	Client       bool     // ExtKeyUsageClientAuth
}

// PKI is everything secret a cluster needs: its CA, the certificates the CA
// issued (by [CertSpec.Name]) and the service-account signing key pair.
type PKI struct {
	CA       *KeyPair
	Certs    map[string]*KeyPair
	SAKeyPEM []byte // PKCS #8 private key
	SAPubPEM []byte // PKIX public key
}

// NewCA makes a self-signed CA valid from now (backdated an hour).
func NewCA(commonName string, now time.Time) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return sign(tmpl, key, tmpl, key)
}

// Issue makes a certificate for spec signed by ca.
func (ca *KeyPair) Issue(spec CertSpec, now time.Time) (*KeyPair, error) {
	if !spec.Server && !spec.Client {
		return nil, fmt.Errorf("cert %s: neither server nor client", spec.Name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cert %s key: %w", spec.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-certBackdate),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	kp, err := sign(tmpl, key, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("cert %s: %w", spec.Name, err)
	}
	return kp, nil
}

func sign(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey crypto.Signer) (*KeyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Names of the certificates in [CertSpecs].
const (
	certAPIServer         = "apiserver"
	certAPIServerKubelet  = "apiserver-kubelet-client"
	certKubeletServer     = "kubelet-server"
	certKubeletClient     = "kubelet"
	certControllerManager = "controller-manager"
	certScheduler         = "scheduler"
	certAdmin             = "admin"
)

// CertSpecs lists the certificates a cluster with layout l needs.
func CertSpecs(l Layout) []CertSpec {
	loopback := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	apiIPs := append([]net.IP{}, loopback...)
	if ip := firstServiceIP(l.ServiceSubnet); ip != nil {
		apiIPs = append(apiIPs, ip)
	}
	return []CertSpec{
		{
			Name:       certAPIServer,
			CommonName: "kube-apiserver",
			DNSNames: []string{"localhost", l.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local"},
			IPs:    apiIPs,
			Server: true,
		},
		{Name: certAPIServerKubelet, CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true},
		{Name: certKubeletServer, CommonName: l.NodeName, DNSNames: []string{l.NodeName, "localhost"}, IPs: loopback, Server: true},
		{Name: certKubeletClient, CommonName: "system:node:" + l.NodeName, Organization: []string{"system:nodes"}, Client: true},
		{Name: certControllerManager, CommonName: "system:kube-controller-manager", Client: true},
		{Name: certScheduler, CommonName: "system:kube-scheduler", Client: true},
		{Name: certAdmin, CommonName: "opensbx-admin", Organization: []string{"system:masters"}, Client: true},
	}
}

// firstServiceIP is the first address of the service subnet: the kubernetes
// service's cluster IP. It returns nil for a subnet it cannot parse.
func firstServiceIP(subnet string) net.IP {
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil
	}
	out := make(net.IP, len(ip))
	copy(out, ip)
	out[3]++
	return out
}

// NewPKI makes a fresh CA, every certificate in [CertSpecs] and a
// service-account key pair.
func NewPKI(l Layout, now time.Time) (*PKI, error) {
	ca, err := NewCA("opensbx-kube-ca", now)
	if err != nil {
		return nil, err
	}
	p := &PKI{CA: ca, Certs: map[string]*KeyPair{}}
	for _, spec := range CertSpecs(l) {
		kp, err := ca.Issue(spec, now)
		if err != nil {
			return nil, err
		}
		p.Certs[spec.Name] = kp
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(sa)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	p.SAKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})
	p.SAPubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return p, nil
}

// Write stores the PKI in dir (created 0700): ca.crt, ca.key, NAME.crt and
// NAME.key per certificate, sa.key and sa.pub. Keys are 0600.
func (p *PKI) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write pki: %w", err)
	}
	files := map[string][]byte{
		"ca.crt": p.CA.CertPEM,
		"ca.key": p.CA.KeyPEM,
		"sa.key": p.SAKeyPEM,
		"sa.pub": p.SAPubPEM,
	}
	for name, kp := range p.Certs {
		files[name+".crt"] = kp.CertPEM
		files[name+".key"] = kp.KeyPEM
	}
	var errs []error
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write pki: %w", err)
	}
	return nil
}
