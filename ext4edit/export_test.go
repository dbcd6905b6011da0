package ext4edit

// Test hooks for the external test package.

// Device is the I/O interface under an Image.
type Device = device

// WrapDevice replaces img's device with wrap(current): crash and
// lost-write tests wrap the file to inject faults.
func WrapDevice(img *Image, wrap func(Device) Device) {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.dev = wrap(img.dev)
}
