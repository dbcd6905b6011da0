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

// SetDeviceHook makes every image Mkfs makes (its mkfs writes included)
// and Open opens go through hook(path, device) until the returned restore
// is called. The hook sees every image of the process: it should wrap
// only the paths it is after and return the device unchanged otherwise.
func SetDeviceHook(hook func(path string, d Device) Device) (restore func()) {
	prev := deviceHook
	deviceHook = hook
	return func() { deviceHook = prev }
}
