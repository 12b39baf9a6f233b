//! CUDA backend checks that need no GPU (feature `cuda`): the build embedded the kernels
//! when CI asked for them, and on a machine without the NVIDIA driver opening a device is a
//! clean error, never a panic. GPU checks run on the device machine (tests/cuda_kernels.rs, tests/cuda_model.rs, examples/bench_cuda.rs via tools/device/run.sh).
#![cfg(feature = "cuda")]

use qwentts::ErrorKind;
use qwentts::backend::cuda::{CudaDevice, NO_DRIVER, driver_present, kernels_compiled};

#[test]
fn kernels_embedded_when_required() {
    // tools/test.sh builds with QT_REQUIRE_KERNELS=1 (build.rs then fails without nvcc).
    if std::env::var("QT_REQUIRE_KERNELS").is_ok_and(|v| v == "1") {
        assert!(kernels_compiled(), "QT_REQUIRE_KERNELS=1 but no kernels are embedded");
    }
}

#[test]
fn no_driver_is_a_clean_error() {
    if driver_present() {
        eprintln!("skipped: an NVIDIA driver library is present on this machine");
        return;
    }
    let result = std::panic::catch_unwind(|| CudaDevice::new(0));
    let err = result.expect("CudaDevice::new must not panic without a driver").expect_err("no driver: must fail");
    assert_eq!(err.kind(), ErrorKind::NoCudaDriver);
    assert!(err.message().starts_with(NO_DRIVER), "{}", err.message());
    // Asking again gives the same answer (the check is cached, nothing half-initialised).
    let again = CudaDevice::new(3).expect_err("no driver: must fail");
    assert!(again.message().starts_with(NO_DRIVER), "{}", again.message());
}

#[test]
fn model_on_cuda_without_driver_is_a_clean_error() {
    if driver_present() {
        eprintln!("skipped: an NVIDIA driver library is present on this machine");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base");
    let options = qwentts::LoadOptions { device: qwentts::Device::Cuda(0), ..Default::default() };
    let err = match qwentts::Model::load(&dir, &options) {
        Ok(_) => panic!("loading on CUDA without a driver must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NoCudaDriver, "{err}");
}
