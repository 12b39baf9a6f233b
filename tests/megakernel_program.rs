//! The frame megakernel's PROGRAM, checked without a GPU: an interpreter of the op list
//! (`backend::cuda::megakernel::program`) executes it on the host over the CPU backend's f32
//! weights and buffers, with the semantics of each op as kernels/megakernel/*.cuh define it,
//! and must reproduce the reference frame loop (`model::generate`) on both tiny fixtures:
//! the same greedy codes, logits equal to f32 rounding. What this proves is the wiring: op
//! order, buffers, strides, positions, the code predictor's 2-row first step, which head and
//! which embedding table each codebook uses, the projection of the 1.7B layout, the next
//! talker input. The kernels' own arithmetic is checked on the GPU (cuda_model.rs,
//! cuda_megakernel.rs).
//!
//! Addresses in the program are host pointers here (the interpreter reads and writes through
//! them), and weights are f32: the interpreter indexes weight rows with the host element size.

#![cfg(feature = "cuda")]

mod common;

use common::checkpoint_dir;
use qwentts::backend::Backend;
use qwentts::backend::cpu::CpuBackend;
use qwentts::backend::cuda::megakernel::layout::*;
use qwentts::backend::cuda::megakernel::program::{self, ArenaLayout, RequestAddrs};
use qwentts::engine::megakernel::{frame_weights, inv_freq};
use qwentts::model::Checkpoint;
use qwentts::model::code_predictor::CodePredictor;
use qwentts::model::generate::{FrameLoopConfig, generate_codes};
use qwentts::model::prompt::{PromptEmbeds, PromptRequest, SpecialIds, Voice, VoiceData, plan_request};
use qwentts::model::sampling::{SamplerConfig, TalkerSamplerConfig, process_talker, argmax};
use qwentts::model::talker::Talker;
use qwentts::text::TextTokenizer;

/// `n` f32 values at host address `addr`.
///
/// # Safety
/// `addr` points at `n` live f32 values that nothing else borrows during the use.
unsafe fn at<'a>(addr: u64, n: usize) -> &'a mut [f32] {
    assert!(addr != 0, "null address in the program");
    unsafe { std::slice::from_raw_parts_mut(addr as *mut f32, n) }
}

fn f32_at(addr: u64, i: usize) -> f32 {
    unsafe { *(addr as *const f32).add(i) }
}

/// The host interpreter of one request's program.
struct Interpreter<'p> {
    ops: &'p [MkOp],
    codes: [u32; MAX_GROUPS],
    /// Codebook-0 ids generated so far (the talker chain's penalty history).
    generated: Vec<u32>,
    sampler: TalkerSamplerConfig,
    frame: usize,
    talker_position: usize,
    /// Raw logits each sampler saw in the last frame.
    dump: Vec<Vec<f32>>,
}

fn rms(x: &mut [f32], w: u64, eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for (i, v) in x.iter_mut().enumerate() {
        *v = *v * scale * f32_at(w, i);
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl Interpreter<'_> {
    fn input_row(&self, src: &MkSrc, k: usize) -> Vec<f32> {
        if src.f32 != 0 {
            unsafe { at(src.f32, k) }.to_vec()
        } else {
            let code = self.codes[src.code_slot as usize] as usize;
            unsafe { at(src.table + 4 * (code * k) as u64, k) }.to_vec()
        }
    }

    fn matvec(&mut self, op: &MkOp) {
        let (k, rows) = (op.k as usize, op.rows as usize);
        let mut xs: Vec<Vec<f32>> = (0..rows).map(|r| self.input_row(&op.src[r], k)).collect();
        if op.raw_copy != 0 {
            for (r, x) in xs.iter().enumerate() {
                unsafe { at(op.raw_copy + 4 * (r * k) as u64, k) }.copy_from_slice(x);
            }
        }
        if op.norm_w != 0 {
            xs.iter_mut().for_each(|x| rms(x, op.norm_w, op.eps));
        }
        if op.norm_copy != 0 {
            unsafe { at(op.norm_copy, k) }.copy_from_slice(&xs[0]);
        }
        let dot = |seg: &MkSeg, row: usize, x: &[f32]| {
            let w = unsafe { at(seg.w + 4 * (row * k) as u64, k) };
            let mut y: f32 = w.iter().zip(x).map(|(a, b)| a * b).sum();
            if seg.bias != 0 {
                y += f32_at(seg.bias, row);
            }
            y
        };
        let stride = op.out_stride as usize;
        for (r, x) in xs.iter().enumerate() {
            if op.paired != 0 {
                let n = op.seg[0].rows as usize;
                let out = unsafe { at(op.out + 4 * (r * stride) as u64, n) };
                for (i, o) in out.iter_mut().enumerate() {
                    *o = silu(dot(&op.seg[0], i, x)) * dot(&op.seg[1], i, x);
                }
                continue;
            }
            for seg in &op.seg[..op.nseg as usize] {
                let n = seg.rows as usize;
                let out = unsafe { at(op.out + 4 * (r * stride + seg.vrow0 as usize) as u64, n) };
                for (i, o) in out.iter_mut().enumerate() {
                    let y = dot(seg, i, x);
                    *o = if op.epilogue == EPI_ADD { *o + y } else { y };
                }
            }
        }
    }

    fn attention(&mut self, op: &MkOp) {
        let (rows, hd, hq, hkv) = (op.rows as usize, op.head_dim as usize, op.heads as usize, op.kv_heads as usize);
        let grp = hq / hkv;
        let p0 = if op.position >= 0 { op.position as usize } else { self.talker_position };
        let width = (hq + 2 * hkv) * hd;
        let kvw = hkv * hd;
        let half = hd / 2;
        let rope = |v: &mut [f32], pos: usize| {
            let orig = v.to_vec();
            for i in 0..hd {
                let j = if i < half { i } else { i - half };
                let angle = f32_at(op.inv_freq, j) * pos as f32;
                let (s, c) = angle.sin_cos();
                v[i] = if i < half { orig[i] * c - orig[i + half] * s } else { orig[i] * c + orig[j] * s };
            }
        };
        let mut qs = Vec::new();
        for r in 0..rows {
            let row = unsafe { at(op.qkv + 4 * (r * width) as u64, width) }.to_vec();
            let pos = p0 + r;
            let mut q = row[..hq * hd].to_vec();
            for h in q.chunks_exact_mut(hd) {
                rms(h, op.q_norm, op.eps);
                rope(h, pos);
            }
            qs.push(q);
            for j in 0..hkv {
                let mut kj = row[hq * hd + j * hd..][..hd].to_vec();
                rms(&mut kj, op.k_norm, op.eps);
                rope(&mut kj, pos);
                let vj = &row[(hq + hkv) * hd + j * hd..][..hd];
                unsafe { at(op.k_cache + 4 * (pos * kvw + j * hd) as u64, hd) }.copy_from_slice(&kj);
                unsafe { at(op.v_cache + 4 * (pos * kvw + j * hd) as u64, hd) }.copy_from_slice(vj);
            }
        }
        let scale = 1.0 / (hd as f32).sqrt();
        for (r, q) in qs.iter().enumerate() {
            let visible = p0 + r + 1;
            let out = unsafe { at(op.attn_out + 4 * (r * hq * hd) as u64, hq * hd) };
            for h in 0..hq {
                let j = h / grp;
                let qh = &q[h * hd..][..hd];
                let scores: Vec<f32> = (0..visible)
                    .map(|p| {
                        let kp = unsafe { at(op.k_cache + 4 * (p * kvw + j * hd) as u64, hd) };
                        qh.iter().zip(kp.iter()).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let l: f32 = e.iter().sum();
                let o = &mut out[h * hd..][..hd];
                o.fill(0.0);
                for (p, w) in e.iter().enumerate() {
                    let vp = unsafe { at(op.v_cache + 4 * (p * kvw + j * hd) as u64, hd) };
                    for (d, v) in o.iter_mut().zip(vp.iter()) {
                        *d += w / l * v;
                    }
                }
            }
        }
    }

    /// Greedy picks (talker: after its processor chain), as the device samplers do with
    /// do_sample off. Returns false when the frame stops here.
    fn sample(&mut self, op: &MkOp) -> bool {
        let logits = unsafe { at(op.logits, op.vocab as usize) }.to_vec();
        self.dump[op.slot as usize] = logits.clone();
        let code = if op.sampler == SAMPLER_TALKER {
            let mut processed = logits;
            process_talker(&mut processed, &self.generated, &self.sampler);
            argmax(&processed)
        } else {
            argmax(&logits)
        };
        self.codes[op.slot as usize] = code;
        if op.sampler == SAMPLER_TALKER {
            self.generated.push(code);
            return code != self.sampler.eos_token;
        }
        true
    }

    fn embed(&mut self, op: &MkOp) {
        let dim = op.dim as usize;
        let text = if self.frame < op.trailing as usize { op.text_rows + 4 * (self.frame * dim) as u64 } else { op.pad_row };
        let out = unsafe { at(op.out, dim) };
        for (i, o) in out.iter_mut().enumerate() {
            let mut v = 0.0f32;
            for g in 0..op.groups as usize {
                v += f32_at(op.tables[g], self.codes[g] as usize * dim + i);
            }
            *o = v + f32_at(text, i);
        }
    }

    /// Runs ops `first..` of frame `frame`; returns the frame's codes (None: stopped).
    fn frame(&mut self, frame: usize, first: usize) -> Option<Vec<u32>> {
        self.frame = frame;
        for op in &self.ops[first..] {
            match op.kind {
                OP_MATVEC => self.matvec(op),
                OP_ATTENTION => self.attention(op),
                OP_SAMPLE => {
                    if !self.sample(op) {
                        return None;
                    }
                }
                OP_EMBED_FRAME => self.embed(op),
                other => panic!("unknown op kind {other}"),
            }
        }
        let groups = self.ops.iter().filter(|o| o.kind == OP_SAMPLE).count();
        Some(self.codes[..groups].to_vec())
    }
}

/// The program of a greedy request (EOS masked) on `fixture`, interpreted frame by frame,
/// against the reference frame loop on the same CPU weights.
fn program_reproduces_the_frame_loop(fixture: &str, voice: Voice<'_>, speaker: Option<Vec<f32>>, language: &str) {
    const FRAMES: usize = 10;
    let dir = checkpoint_dir(fixture);
    let b = CpuBackend::new(2);
    let ckpt = Checkpoint::open(&dir).unwrap();
    let cfg = &ckpt.config.talker_config;
    let talker = Talker::load(&b, &ckpt.weights, cfg).unwrap();
    let predictor = CodePredictor::load(&b, &ckpt.weights, cfg).unwrap();
    let tokenizer = TextTokenizer::from_dir(&dir).unwrap();
    let ids = SpecialIds::from_config(&ckpt.config);
    let req = PromptRequest { text: "The program runs on the host.", language, voice, non_streaming_mode: false };
    let (plan, _) = plan_request(&ckpt.config, &tokenizer, &req).unwrap();
    let voice_data = VoiceData { speaker_vector: speaker.as_deref(), ref_codes: None };
    let mut sampler = TalkerSamplerConfig::new(&ckpt.generation, cfg);
    sampler.sampler = SamplerConfig::greedy();
    sampler.min_new_tokens = usize::MAX;
    let config = FrameLoopConfig {
        talker: sampler.clone(),
        code_predictor: SamplerConfig::greedy(),
        frame_limit: FRAMES,
        seed: 0,
    };

    // The reference: the frame loop itself.
    let want = generate_codes(&b, &talker, &predictor, None, &ids, &plan, voice_data, &config, None, None).unwrap();
    assert_eq!(want.frames(), FRAMES);

    // The program: prefill as the engine does, then the ops on the host.
    let mut s = b.new_stream().unwrap();
    let mut prompt = PromptEmbeds::materialize(&b, &mut s, &talker, &predictor, &ids, &plan, voice_data, 0).unwrap();
    let rows = prompt.len();
    let mut tst = talker.new_state(&b, rows + FRAMES + 1).unwrap();
    talker.forward(&b, &mut s, &mut tst, prompt.embeds_mut(), rows).unwrap();

    let weights = frame_weights(&talker, &predictor, |w| w.data().as_ptr() as u64);
    assert_eq!(weights.unsupported(), None);
    let layout = ArenaLayout::new(&weights);
    let mut arena = vec![0u32; layout.total_words];
    let base = arena.as_mut_ptr() as u64;
    let kv = tst.kv();
    let addrs = RequestAddrs {
        arena: base,
        talker_kv: (0..kv.layers()).map(|i| (kv.layer(i).0.as_ptr() as u64, kv.layer(i).1.as_ptr() as u64)).collect(),
        text_rows: prompt.trailing().as_ptr() as u64,
        trailing: prompt.trailing_len(),
        pad_row: prompt.tts_pad().as_ptr() as u64,
    };
    let p = program::build(&weights, &layout, &addrs);
    let put = |words: usize, v: &[f32]| unsafe { at(base + 4 * words as u64, v.len()) }.copy_from_slice(v);
    put(layout.inv_freq_talker, &inv_freq(talker.dims()));
    put(layout.inv_freq_cp, &inv_freq(predictor.dims()));
    put(layout.hidden_last, tst.last_hidden());
    put(layout.logits_talker, tst.logits_device());

    let mut it = Interpreter {
        ops: &p.ops,
        codes: [0; MAX_GROUPS],
        generated: Vec::new(),
        sampler,
        frame: 0,
        talker_position: 0,
        dump: vec![Vec::new(); MAX_GROUPS],
    };
    for f in 0..FRAMES {
        it.talker_position = (rows + f).saturating_sub(1);
        let first = if f == 0 { p.sample0 } else { 0 };
        let codes = it.frame(f, first).unwrap_or_else(|| panic!("{fixture}: frame {f} stopped"));
        assert_eq!(&codes[..], want.frame(f), "{fixture}: frame {f}: the program's greedy codes differ from the frame loop's");
    }
    drop(arena); // the program's buffers lived until here
}

#[test]
fn program_matches_the_frame_loop_on_tiny_base() {
    let hidden = 32;
    let speaker: Vec<f32> = (0..hidden).map(|i| (i as f32 * 0.61).cos() * 0.1).collect();
    program_reproduces_the_frame_loop("tiny-base", Voice::XVector, Some(speaker), "english");
}

/// tiny-customvoice has the 1.7B layout: a code predictor narrower than the talker, with
/// `small_to_mtp_projection`.
#[test]
fn program_matches_the_frame_loop_on_tiny_customvoice() {
    program_reproduces_the_frame_loop("tiny-customvoice", Voice::Speaker { name: "ryan", instruct: None }, None, "english");
}
