package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// Netfilter netlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	netlinkNetfilter   = 12
	nfnlSubsysNFTables = 10
	nfnlMsgBatchBegin  = 0x10
	nfnlMsgBatchEnd    = 0x11
	nftMsgDelTable     = 2
	nftaTableName      = 1
	nfprotoIPv4        = 2
	nfprotoIPv6        = 10
)

// deleteNFTable deletes one nf_tables table (family nfprotoIPv4 or
// nfprotoIPv6) through netlink: iptables-nft can empty a table it made but
// cannot delete it, and the nft program may not be installed. The caller
// makes sure the table is empty.
func deleteNFTable(family byte, name string) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, netlinkNetfilter)
	if err != nil {
		return fmt.Errorf("delete nf_tables table %s: %w", name, err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("delete nf_tables table %s: %w", name, err)
	}
	const delSeq = 2
	var batch []byte
	batch = append(batch, nfnlMessage(nfnlMsgBatchBegin, syscall.NLM_F_REQUEST, 1, syscall.AF_UNSPEC, nfnlSubsysNFTables, nil)...)
	batch = append(batch, nfnlMessage(nfnlSubsysNFTables<<8|nftMsgDelTable, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, delSeq,
		family, 0, netlinkAttr(nftaTableName, append([]byte(name), 0)))...)
	batch = append(batch, nfnlMessage(nfnlMsgBatchEnd, syscall.NLM_F_REQUEST, 3, syscall.AF_UNSPEC, nfnlSubsysNFTables, nil)...)
	if err := syscall.Sendto(fd, batch, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("delete nf_tables table %s: %w", name, err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("delete nf_tables table %s: %w", name, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("delete nf_tables table %s: %w", name, err)
		}
		for _, m := range msgs {
			if m.Header.Type != syscall.NLMSG_ERROR || m.Header.Seq != delSeq || len(m.Data) < 4 {
				continue
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				return fmt.Errorf("delete nf_tables table %s: %w", name, syscall.Errno(errno))
			}
			return nil
		}
		if len(msgs) == 0 {
			return errors.New("delete nf_tables table " + name + ": no answer")
		}
	}
}

// nfnlMessage is one netlink message with a nfgenmsg header.
func nfnlMessage(typ, flags uint16, seq uint32, family byte, resID uint16, attrs []byte) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN+4, syscall.NLMSG_HDRLEN+4+len(attrs))
	b = append(b, attrs...)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b[16] = family
	b[17] = 0 // NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], resID)
	return b
}

// netlinkAttr is one netlink attribute, padded to 4 bytes.
func netlinkAttr(typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}
