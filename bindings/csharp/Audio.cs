// Audio.cs: generation: GenerateParams (qt_gen_params with managed strings and an abort hook),
// Chunk (what the streaming handler sees), and Audio (the qt_audio that Model.Generate returns).
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>Options for Model.Generate. Get the model's defaults from
    /// Model.DefaultGenerateParams(), then change what you need.</summary>
    public sealed class GenerateParams
    {
        /// <summary>Every numeric field (DoSample, Temperature, TopK, ..., Seed, MaxFrames,
        /// ChunkFrames, FirstChunkFrames, OutputSampleRate). Its string and callback pointers are set by Generate.</summary>
        public GenParamsNative Native;
        /// <summary>"auto" or one of the model's languages, e.g. "English".</summary>
        public string Language = "auto";
        /// <summary>Style instruction (1.7B CustomVoice models), or null.</summary>
        public string Instruct;
        /// <summary>Polled before the prefill, during it and after every frame on the generating thread; return true to stop
        /// (Generate then returns an aborted Audio). An exception it throws stops generation
        /// and is rethrown by Generate.</summary>
        public Func<bool> ShouldAbort;

        /// <summary>Native with its string pointers set to pinned UTF-8 copies of Language and
        /// Instruct (callbacks left to the caller); Free the handles after the call.</summary>
        internal GenParamsNative Pin(out GCHandle language, out GCHandle instruct)
        {
            language = GCHandle.Alloc(Utf8.Encode(Language ?? "auto"), GCHandleType.Pinned);
            instruct = Instruct == null ? default(GCHandle) : GCHandle.Alloc(Utf8.Encode(Instruct), GCHandleType.Pinned);
            GenParamsNative native = Native;
            native.StructSize = (uint)Marshal.SizeOf(typeof(GenParamsNative));
            native.Language = language.AddrOfPinnedObject();
            native.Instruct = Instruct == null ? IntPtr.Zero : instruct.AddrOfPinnedObject();
            return native;
        }

        internal static void Unpin(GCHandle language, GCHandle instruct)
        {
            if (instruct.IsAllocated) instruct.Free();
            if (language.IsAllocated) language.Free();
        }
    }

    /// <summary>One piece of streamed audio, copied out of the library's buffer.</summary>
    public sealed class Chunk
    {
        public float[] Samples;   // mono, at SampleRate
        public int SampleRate;
        public int Index;         // 0, 1, 2, ... in order
        public long FirstSample;  // position of Samples[0] in the utterance
        public int FirstFrame;    // codec frames before this chunk
        public int Frames;        // codec frames since the previous chunk
        public bool IsLast;       // the final chunk of a call that was not stopped
        public uint StructSize;   // bytes of qt_chunk the library filled
    }

    /// <summary>Generated speech. Dispose frees the native samples.</summary>
    public sealed class Audio : IDisposable
    {
        readonly AudioHandle handle;
        readonly AudioInfoNative info;
        float[] samples;

        internal Audio(AudioHandle handle)
        {
            this.handle = handle;
            var raw = new AudioInfoNative();
            raw.StructSize = (uint)Marshal.SizeOf(typeof(AudioInfoNative));
            Status.Check("qt_audio_get_info", NativeMethods.qt_audio_get_info(handle, ref raw));
            info = raw;
        }

        public AudioHandle Handle { get { return handle; } }
        /// <summary>Everything qt_audio_get_info reports (rates, frames, finish, timings).</summary>
        public AudioInfoNative Info { get { return info; } }
        public int SampleRate { get { return info.SampleRate; } }
        public int Frames { get { return info.NFrames; } }
        /// <summary>NativeMethods.QT_FINISH_EOS, _FRAME_LIMIT or _ABORTED.</summary>
        public int Finish { get { return info.Finish; } }
        /// <summary>True when a handler asked to stop.</summary>
        public bool Aborted { get { return info.Finish == NativeMethods.QT_FINISH_ABORTED; } }

        /// <summary>The samples (mono), copied from the library once.</summary>
        public float[] Samples
        {
            get
            {
                if (samples == null)
                {
                    IntPtr p;
                    UIntPtr n;
                    Status.Check("qt_audio_samples", NativeMethods.qt_audio_samples(handle, out p, out n));
                    samples = new float[(int)n.ToUInt64()];
                    if (samples.Length > 0) Marshal.Copy(p, samples, 0, samples.Length);
                }
                return samples;
            }
        }

        /// <summary>16-bit PCM mono WAV at SampleRate.</summary>
        public void WriteWav(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            Status.Check("qt_audio_write_wav", NativeMethods.qt_audio_write_wav(handle, Utf8.Encode(path)));
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
