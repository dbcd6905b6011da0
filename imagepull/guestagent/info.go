package guestagent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// SystemInfo reports the running system: host name, kernel release,
// uptime from /proc/uptime (zero where there is none) and every interface
// address.
func SystemInfo() (*Info, error) {
	info := &Info{Addresses: []Address{}}
	var err error
	if info.Hostname, err = os.Hostname(); err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	info.Kernel = kernelRelease()
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		info.UptimeSeconds, err = parseUptime(string(b))
		if err != nil {
			return nil, err
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			info.Addresses = append(info.Addresses, Address{Iface: ifc.Name, Address: a.String()})
		}
	}
	return info, nil
}

// parseUptime reads the first field of /proc/uptime ("12.34 56.78").
func parseUptime(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/uptime: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/uptime: %w", err)
	}
	return v, nil
}
