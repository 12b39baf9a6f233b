//! STUB (to be replaced by the C ABI work): the `qt_*` C surface.
