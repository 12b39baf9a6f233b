// NativeMethods.cs: P/Invoke declarations and constants of the qwentts C API (include/qwentts.h),
// one to one, with the C names. Nothing here allocates or interprets: see Qwentts.cs for the
// idiomatic wrapper. tests/c_consumers.rs checks every constant against the header.
//
// Strings: input strings are passed as NUL-terminated UTF-8 byte arrays (Utf8.Encode), returned
// strings as IntPtr read with Utf8.Decode: this works on Mono, .NET and Unity (IL2CPP included)
// without relying on UnmanagedType.LPUTF8Str.
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>Receives one log message (see qt_log_cb). Must not throw.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void LogCallback(int level, IntPtr message, IntPtr userData);

    /// <summary>Receives one chunk of audio (see qt_chunk_cb): chunk points to a ChunkNative valid
    /// only during the call. Returns QT_CONTINUE or QT_STOP. Must not throw.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int ChunkCallback(IntPtr chunk, IntPtr userData);

    /// <summary>Polled before the prefill, during it and after every frame (see qt_abort_cb). Returns QT_CONTINUE or QT_STOP. Must not throw.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int AbortCallback(IntPtr userData);

    /// <summary>The C API: constants and functions, named as in qwentts.h.</summary>
    public static class NativeMethods
    {
        public const string Library = "qwentts"; // libqwentts.so, qwentts.dll, libqwentts.dylib

        public const uint QT_ABI_VERSION = 1;

        public const int QT_STATUS_OK = 0;
        public const int QT_STATUS_ABORTED = 1;
        public const int QT_STATUS_INVALID_ARGUMENT = -1;
        public const int QT_STATUS_NULL_ARGUMENT = -2;
        public const int QT_STATUS_ABI_MISMATCH = -3;
        public const int QT_STATUS_NOT_FOUND = -4;
        public const int QT_STATUS_IO = -5;
        public const int QT_STATUS_BAD_CONFIG = -6;
        public const int QT_STATUS_BAD_WEIGHTS = -7;
        public const int QT_STATUS_MISSING_TENSOR = -8;
        public const int QT_STATUS_SHAPE_MISMATCH = -9;
        public const int QT_STATUS_BAD_TOKENIZER = -10;
        public const int QT_STATUS_UNSUPPORTED = -11;
        public const int QT_STATUS_BUFFER_TOO_SMALL = -12;
        public const int QT_STATUS_INVALID_HANDLE = -13;
        public const int QT_STATUS_VOICE_MISMATCH = -14;
        public const int QT_STATUS_BAD_VOICE = -15;
        public const int QT_STATUS_NO_CUDA_DRIVER = -16;
        public const int QT_STATUS_NO_DEVICE = -17;
        public const int QT_STATUS_OUT_OF_MEMORY = -18;
        public const int QT_STATUS_CUDA = -19;
        public const int QT_STATUS_PANIC = -99;

        public const int QT_DEVICE_CPU = -1;
        public const int QT_ENGINE_AUTO = 0;
        public const int QT_ENGINE_MEGAKERNEL = 1;
        public const int QT_ENGINE_UNFUSED = 2;
        public const int QT_PREFIX_CACHE_OFF = -1;
        public const int QT_PREFIX_CACHE_MAX_MB = 1 << 20;

        public const int QT_MODEL_BASE = 1;
        public const int QT_MODEL_CUSTOM_VOICE = 2;
        public const int QT_MODEL_VOICE_DESIGN = 3;

        public const int QT_LOG_OFF = 0;
        public const int QT_LOG_ERROR = 1;
        public const int QT_LOG_WARN = 2;
        public const int QT_LOG_INFO = 3;
        public const int QT_LOG_DEBUG = 4;
        public const int QT_LOG_TRACE = 5;

        public const int QT_CONTINUE = 0;
        public const int QT_STOP = 1;
        public const ulong QT_SEED_RANDOM = ulong.MaxValue;

        public const int QT_TEXT_FEED_DEFAULT = -1;
        public const int QT_TEXT_FEED_STREAMING = 0;
        public const int QT_TEXT_FEED_FULL = 1;

        public const int QT_FINISH_EOS = 1;
        public const int QT_FINISH_FRAME_LIMIT = 2;
        public const int QT_FINISH_ABORTED = 3;

        public const int QT_CLONE_AUTO = 0;
        public const int QT_CLONE_XVECTOR = 1;
        public const int QT_CLONE_ICL = 2;

        public const int QT_VOICE_XVECTOR = 1;
        public const int QT_VOICE_ICL = 2;
        public const int QT_VOICE_SPEAKER = 3;
        public const int QT_VOICE_DESIGN = 4;

        public const int QT_STREAM_RUNNING = 0;
        public const int QT_STREAM_FINISHED = 1;
        public const int QT_STREAM_CANCELLED = 2;
        public const int QT_STREAM_FAILED = 3;

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr qt_last_error();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr qt_status_str(int status);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr qt_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint qt_abi_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr qt_build_info();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_device_count();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_log_set(LogCallback callback, IntPtr userData);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_log_set_level(int level);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern void qt_free(IntPtr obj);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_model_params_default(ref ModelParams output, UIntPtr size);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_load(byte[] modelDir, ref ModelParams parameters, out ModelHandle model);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_model_get_info(ModelHandle model, ref ModelInfoNative info);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_model_language(ModelHandle model, UIntPtr index, out IntPtr name);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_model_speaker(ModelHandle model, UIntPtr index, out IntPtr name);

        // ---- voices (byte[] arguments: NUL-terminated UTF-8 from Utf8.Encode, or null for NULL)

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_clone_params_default(ref CloneParams output, UIntPtr size);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_clone_voice(ModelHandle model, float[] samples, UIntPtr nSamples, int channels,
            int sampleRate, byte[] refText, ref CloneParams parameters, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_clone_voice_from_file(ModelHandle model, byte[] path, byte[] refText,
            ref CloneParams parameters, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_from_embedding(ModelHandle model, float[] embedding, UIntPtr dim, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_from_speaker(ModelHandle model, byte[] name, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_from_description(ModelHandle model, byte[] description, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_get_info(VoiceHandle voice, ref VoiceInfoNative info);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_embedding(VoiceHandle voice, float[] output, UIntPtr cap, out UIntPtr dim);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_serialize(VoiceHandle voice, byte[] buf, UIntPtr cap, out UIntPtr len);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_deserialize(ModelHandle model, byte[] buf, UIntPtr len, out VoiceHandle voice);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_save(VoiceHandle voice, byte[] path);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_voice_load(ModelHandle model, byte[] path, out VoiceHandle voice);

        // ---- generation and audio

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_gen_params_default(ModelHandle model, ref GenParamsNative output, UIntPtr size);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_generate(ModelHandle model, VoiceHandle voice, byte[] text, ref GenParamsNative parameters,
            ChunkCallback onChunk, IntPtr userData, out AudioHandle audio);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_audio_get_info(AudioHandle audio, ref AudioInfoNative info);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_audio_samples(AudioHandle audio, out IntPtr samples, out UIntPtr nSamples);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_stream_start(ModelHandle model, VoiceHandle voice, byte[] text, ref GenParamsNative parameters,
            UIntPtr capacity, out StreamHandle stream);

        // `output` is a blittable array: pinned for the call, not copied, nothing allocated.
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_stream_read(StreamHandle stream, [Out] float[] output, UIntPtr cap, out UIntPtr n, out int ended);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_stream_cancel(StreamHandle stream);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_stream_get_info(StreamHandle stream, ref StreamInfoNative info);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_stream_result(StreamHandle stream);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        public static extern int qt_audio_write_wav(AudioHandle audio, byte[] path);
    }
}
