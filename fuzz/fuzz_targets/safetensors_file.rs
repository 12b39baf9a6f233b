//! The checkpoint container: header length, JSON header, dtypes, shapes, data offsets. Any
//! file that opens must hand out every listed tensor with exactly shape × dtype bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts::model::SafeTensorsFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = SafeTensorsFile::from_bytes("fuzz.safetensors", data.to_vec()) else { return };
    let names: Vec<String> = file.names().map(str::to_owned).collect();
    let mut total = 0u64;
    for name in &names {
        let view = file.get(name).expect("a listed tensor is there");
        assert_eq!(view.bytes.len(), view.numel() * view.dtype.size(), "{name}: bytes vs shape");
        assert_eq!(view.to_f32_vec().len(), view.numel());
        total += view.bytes.len() as u64;
    }
    assert_eq!(total, file.data_bytes(), "tensors tile the data section");
});
