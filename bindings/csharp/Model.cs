// Model.cs: a loaded checkpoint (qt_model): its description, the voices it makes, and generation.
using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>What qt_model_get_info reports, with the strings copied.</summary>
    public sealed class ModelInfo
    {
        public int Kind;               // NativeMethods.QT_MODEL_*
        public string SizeLabel;
        public int SampleRate;
        public float FrameRate;
        public int Codebooks;
        public int TalkerHiddenSize;
        public int TalkerLayers;
        public int CodePredictorLayers;
        public bool CanClone;
        public int Device;
        public ulong TensorCount;
        public ulong WeightBytes;
        public string[] Languages;
        public string[] Speakers;
        /// <summary>Bytes the library filled (its struct_size).</summary>
        public uint StructSize;
    }

    /// <summary>A loaded Qwen3-TTS checkpoint. Immutable; share it across threads. Dispose to free it.</summary>
    public sealed class Model : IDisposable
    {
        readonly ModelHandle handle;

        Model(ModelHandle handle)
        {
            this.handle = handle;
        }

        /// <summary>The native handle, for calls this class does not wrap.</summary>
        public ModelHandle Handle { get { return handle; } }

        public static Model Load(string dir)
        {
            return Load(dir, NativeMethods.QT_DEVICE_CPU);
        }

        /// <summary>qt_load: throws QwenttsException (NOT_FOUND, BAD_CONFIG, ...) on failure.</summary>
        public static Model Load(string dir, int device)
        {
            return Load(dir, device, NativeMethods.QT_ENGINE_AUTO);
        }

        /// <summary>qt_load on a device (QT_DEVICE_CPU or a CUDA ordinal) with an engine (QT_ENGINE_*).</summary>
        public static Model Load(string dir, int device, int engine)
        {
            ModelParams p = ModelParams.Create();
            p.Device = device;
            p.Engine = engine;
            return Load(dir, p);
        }

        /// <summary>qt_load with every option, e.g. the voice prefix cache's size in
        /// PrefixCacheMb. Start from ModelParams.Create(): a zeroed struct has no StructSize and
        /// is refused (QT_STATUS_ABI_MISMATCH).</summary>
        public static Model Load(string dir, ModelParams p)
        {
            if (dir == null) throw new ArgumentNullException("dir");
            ModelHandle h;
            int status = NativeMethods.qt_load(Utf8.Encode(dir), ref p, out h);
            if (status < 0)
            {
                QwenttsException error = Status.Error("qt_load", status); // before any other call
                if (h != null) h.Dispose(); // invalid (NULL) handle: nothing to free
                throw error;
            }
            return new Model(h);
        }

        public ModelInfo GetInfo()
        {
            ModelInfoNative raw = ModelInfoNative.Create();
            Status.Check("qt_model_get_info", NativeMethods.qt_model_get_info(handle, ref raw));
            var info = new ModelInfo();
            info.StructSize = raw.StructSize;
            info.Kind = raw.Kind;
            info.SizeLabel = Utf8.Decode(raw.SizeLabel);
            info.SampleRate = raw.SampleRate;
            info.FrameRate = raw.FrameRate;
            info.Codebooks = raw.NCodebooks;
            info.TalkerHiddenSize = raw.TalkerHiddenSize;
            info.TalkerLayers = raw.TalkerLayers;
            info.CodePredictorLayers = raw.CodePredictorLayers;
            info.CanClone = raw.CanClone != 0;
            info.Device = raw.Device;
            info.TensorCount = raw.TensorCount;
            info.WeightBytes = raw.WeightBytes;
            info.Languages = new string[(int)raw.NLanguages.ToUInt64()];
            for (int i = 0; i < info.Languages.Length; i++)
            {
                IntPtr name;
                Status.Check("qt_model_language", NativeMethods.qt_model_language(handle, (UIntPtr)i, out name));
                info.Languages[i] = Utf8.Decode(name);
            }
            info.Speakers = new string[(int)raw.NSpeakers.ToUInt64()];
            for (int i = 0; i < info.Speakers.Length; i++)
            {
                IntPtr name;
                Status.Check("qt_model_speaker", NativeMethods.qt_model_speaker(handle, (UIntPtr)i, out name));
                info.Speakers[i] = Utf8.Decode(name);
            }
            return info;
        }

        // ---- voices ----------------------------------------------------------------------

        /// <summary>Clones a voice from interleaved float PCM (any rate, 1..64 channels). With the
        /// transcript of the recording the clone is in-context (closest imitation); with null,
        /// x-vector only.</summary>
        public Voice CloneVoice(float[] samples, int channels, int sampleRate, string refText)
        {
            return CloneVoice(samples, channels, sampleRate, refText, CloneParams.Create());
        }

        public Voice CloneVoice(float[] samples, int channels, int sampleRate, string refText, CloneParams p)
        {
            if (samples == null) throw new ArgumentNullException("samples");
            VoiceHandle h;
            int status = NativeMethods.qt_clone_voice(handle, samples, (UIntPtr)samples.Length, channels, sampleRate,
                refText == null ? null : Utf8.Encode(refText), ref p, out h);
            return Voice.FromCall("qt_clone_voice", status, h);
        }

        /// <summary>Clones a voice from an audio file (WAV, FLAC, Ogg Vorbis, MP3).</summary>
        public Voice CloneVoiceFromFile(string path, string refText)
        {
            return CloneVoiceFromFile(path, refText, CloneParams.Create());
        }

        public Voice CloneVoiceFromFile(string path, string refText, CloneParams p)
        {
            if (path == null) throw new ArgumentNullException("path");
            VoiceHandle h;
            int status = NativeMethods.qt_clone_voice_from_file(handle, Utf8.Encode(path),
                refText == null ? null : Utf8.Encode(refText), ref p, out h);
            return Voice.FromCall("qt_clone_voice_from_file", status, h);
        }

        /// <summary>An x-vector-only voice from a stored embedding (Voice.GetEmbedding()).</summary>
        public Voice VoiceFromEmbedding(float[] embedding)
        {
            if (embedding == null) throw new ArgumentNullException("embedding");
            VoiceHandle h;
            int status = NativeMethods.qt_voice_from_embedding(handle, embedding, (UIntPtr)embedding.Length, out h);
            return Voice.FromCall("qt_voice_from_embedding", status, h);
        }

        /// <summary>A built-in speaker of a CustomVoice model (names: GetInfo().Speakers).</summary>
        public Voice VoiceFromSpeaker(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            VoiceHandle h;
            int status = NativeMethods.qt_voice_from_speaker(handle, Utf8.Encode(name), out h);
            return Voice.FromCall("qt_voice_from_speaker", status, h);
        }

        /// <summary>A voice described in words, for a VoiceDesign model (qt_voice_from_description).</summary>
        public Voice VoiceFromDescription(string description)
        {
            if (description == null) throw new ArgumentNullException("description");
            VoiceHandle h;
            int status = NativeMethods.qt_voice_from_description(handle, Utf8.Encode(description), out h);
            return Voice.FromCall("qt_voice_from_description", status, h);
        }

        public Voice DeserializeVoice(byte[] bytes)
        {
            if (bytes == null) throw new ArgumentNullException("bytes");
            VoiceHandle h;
            int status = NativeMethods.qt_voice_deserialize(handle, bytes, (UIntPtr)bytes.Length, out h);
            return Voice.FromCall("qt_voice_deserialize", status, h);
        }

        public Voice LoadVoice(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            VoiceHandle h;
            int status = NativeMethods.qt_voice_load(handle, Utf8.Encode(path), out h);
            return Voice.FromCall("qt_voice_load", status, h);
        }

        // ---- generation ------------------------------------------------------------------

        /// <summary>This model's generation defaults (its generation_config.json).</summary>
        public GenerateParams DefaultGenerateParams()
        {
            var p = new GenerateParams();
            Status.Check("qt_gen_params_default", NativeMethods.qt_gen_params_default(handle, ref p.Native,
                (UIntPtr)Marshal.SizeOf(typeof(GenParamsNative))));
            p.Native.Language = IntPtr.Zero; // points to the library's "auto"; GenerateParams.Language rules
            return p;
        }

        /// <summary>Speaks text in voice and returns the whole utterance; onChunk (optional)
        /// receives the audio while it is made, on this thread, and returns false to stop
        /// (the result is then Aborted). Blocking; many threads may generate on one model.
        /// Throws QwenttsException on failure, or rethrows what a handler threw.</summary>
        public Audio Generate(Voice voice, string text, GenerateParams p, Func<Chunk, bool> onChunk)
        {
            if (voice == null) throw new ArgumentNullException("voice");
            if (text == null) throw new ArgumentNullException("text");
            if (p == null) p = DefaultGenerateParams();
            var state = new GenerateState();
            state.OnChunk = onChunk;
            state.ShouldAbort = p.ShouldAbort;
            GCHandle self = GCHandle.Alloc(state);
            GCHandle language, instruct;
            GenParamsNative native = p.Pin(out language, out instruct);
            try
            {
                native.AbortCb = p.ShouldAbort == null ? IntPtr.Zero : AbortPointer;
                native.AbortUserData = GCHandle.ToIntPtr(self);
                AudioHandle h;
                int status = NativeMethods.qt_generate(handle, voice.Handle, Utf8.Encode(text), ref native,
                    onChunk == null ? null : ChunkTrampoline, GCHandle.ToIntPtr(self), out h);
                if (status < 0)
                {
                    QwenttsException error = Status.Error("qt_generate", status); // before any other call
                    if (h != null) h.Dispose();
                    if (state.Error != null) ExceptionDispatchInfo.Capture(state.Error).Throw();
                    throw error;
                }
                var audio = new Audio(h);
                if (state.Error != null)
                {
                    audio.Dispose();
                    ExceptionDispatchInfo.Capture(state.Error).Throw();
                }
                return audio;
            }
            finally
            {
                GenerateParams.Unpin(language, instruct);
                self.Free();
            }
        }

        public Audio Generate(Voice voice, string text)
        {
            return Generate(voice, text, null, null);
        }

        // The callbacks: static (Unity's IL2CPP cannot call instance delegates from native code),
        // finding their state through the user data. No exception may unwind into the library:
        // one is kept, QT_STOP returned, and Generate rethrows it after qt_generate returned.
        sealed class GenerateState
        {
            public Func<Chunk, bool> OnChunk;
            public Func<bool> ShouldAbort;
            public Exception Error;
        }

        static readonly ChunkCallback ChunkTrampoline = OnChunk;
        static readonly AbortCallback AbortTrampoline = OnAbort;
        static readonly IntPtr AbortPointer = Marshal.GetFunctionPointerForDelegate(AbortTrampoline);

        [MonoPInvokeCallback(typeof(ChunkCallback))]
        static int OnChunk(IntPtr chunk, IntPtr userData)
        {
            var state = (GenerateState)GCHandle.FromIntPtr(userData).Target;
            try
            {
                var raw = (ChunkNative)Marshal.PtrToStructure(chunk, typeof(ChunkNative));
                var c = new Chunk();
                c.Samples = new float[(int)raw.NSamples.ToUInt64()];
                if (c.Samples.Length > 0) Marshal.Copy(raw.Samples, c.Samples, 0, c.Samples.Length);
                c.SampleRate = raw.SampleRate;
                c.Index = raw.Index;
                c.FirstSample = (long)raw.FirstSample;
                c.FirstFrame = raw.FirstFrame;
                c.Frames = raw.NFrames;
                c.IsLast = raw.IsLast != 0;
                c.StructSize = raw.StructSize;
                return state.OnChunk(c) ? NativeMethods.QT_CONTINUE : NativeMethods.QT_STOP;
            }
            catch (Exception e)
            {
                state.Error = e;
                return NativeMethods.QT_STOP;
            }
        }

        [MonoPInvokeCallback(typeof(AbortCallback))]
        static int OnAbort(IntPtr userData)
        {
            var state = (GenerateState)GCHandle.FromIntPtr(userData).Target;
            try
            {
                return state.ShouldAbort() ? NativeMethods.QT_STOP : NativeMethods.QT_CONTINUE;
            }
            catch (Exception e)
            {
                state.Error = e;
                return NativeMethods.QT_STOP;
            }
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
