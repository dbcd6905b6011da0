package ext4edit

// deviceHook, when set, wraps the device of every image Open opens and of
// the scratch image Create's mkfs writes through, given the image file's
// path. Only tests set it (SetDeviceHook in export_test.go): the crash
// sweep of a whole BuildExt4 injects faults from Create's first write on,
// which WrapDevice (after Open returns) cannot reach.
var deviceHook func(path string, d device) device

// hookDevice is d, or what deviceHook makes of it.
func hookDevice(path string, d device) device {
	if deviceHook == nil {
		return d
	}
	return deviceHook(path, d)
}
