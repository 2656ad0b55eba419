package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// apiTimeout bounds one API call when the caller's context has no
// earlier deadline.
const apiTimeout = 30 * time.Second

// apiClient talks Firecracker's HTTP/1.1 API over its Unix socket.
type apiClient struct {
	http *http.Client
}

func newAPIClient(sock string) *apiClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	return &apiClient{http: &http.Client{Transport: tr}}
}

// APIError is a request Firecracker refused, with its fault message.
type APIError struct {
	Method, Path string
	Status       int
	Fault        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker API %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Fault)
}

// call sends one request with body encoded as JSON (none when nil) and
// decodes a JSON answer into result when it is not nil.
func (c *apiClient) call(ctx context.Context, method, path string, body, result any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("firecracker API %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return fmt.Errorf("firecracker API %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("firecracker API %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &fault) == nil && fault.FaultMessage != "" {
			msg = fault.FaultMessage
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Fault: msg}
	}
	if result != nil && len(data) > 0 {
		if err := json.Unmarshal(data, result); err != nil {
			return fmt.Errorf("firecracker API %s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *apiClient) close() { c.http.CloseIdleConnections() }

// The request bodies, named and shaped as in firecracker.yaml.

type bootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

type machineConfig struct {
	VCPUCount  int `json:"vcpu_count"`
	MemSizeMiB int `json:"mem_size_mib"`
}

type drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
}

type networkInterface struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMAC    string `json:"guest_mac,omitempty"`
}

type vsock struct {
	GuestCID int    `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

type action struct {
	ActionType string `json:"action_type"`
}

type vmState struct {
	State string `json:"state"`
}

type snapshotCreate struct {
	SnapshotType string `json:"snapshot_type"`
	SnapshotPath string `json:"snapshot_path"`
	MemFilePath  string `json:"mem_file_path"`
}

type networkOverride struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
}

type vsockOverride struct {
	UDSPath string `json:"uds_path"`
}

type snapshotLoad struct {
	SnapshotPath     string            `json:"snapshot_path"`
	MemFilePath      string            `json:"mem_file_path"`
	ResumeVM         bool              `json:"resume_vm"`
	NetworkOverrides []networkOverride `json:"network_overrides,omitempty"`
	VsockOverride    *vsockOverride    `json:"vsock_override,omitempty"`
}
