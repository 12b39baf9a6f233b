// Structs.cs: blittable mirrors of the qwentts.h structs, field for field. StructSize must be
// set from Marshal.SizeOf (the Create helpers do), so a newer library never writes past them.
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>qt_model_params. Fill with Create(), then change fields.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ModelParams
    {
        public uint StructSize;
        public int Device; // QT_DEVICE_CPU or a CUDA ordinal
        public int Engine; // QT_ENGINE_AUTO, QT_ENGINE_MEGAKERNEL or QT_ENGINE_UNFUSED
        /// <summary>MiB for the voice prefix cache: 0 = the default (64), QT_PREFIX_CACHE_OFF
        /// (-1) = none (since v3).</summary>
        public int PrefixCacheMb;

        /// <summary>The library's defaults (qt_model_params_default).</summary>
        public static ModelParams Create()
        {
            var p = new ModelParams();
            int size = Marshal.SizeOf(typeof(ModelParams));
            Status.Check("qt_model_params_default",
                NativeMethods.qt_model_params_default(ref p, (UIntPtr)size));
            return p;
        }
    }

    /// <summary>qt_model_info. SizeLabel points into the model: copy it before the model is freed.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ModelInfoNative
    {
        public uint StructSize;
        public int Kind;
        public IntPtr SizeLabel;
        public int SampleRate;
        public float FrameRate;
        public int NCodebooks;
        public int TalkerHiddenSize;
        public int TalkerLayers;
        public int CodePredictorLayers;
        public int CanClone;
        public int Device;
        public UIntPtr NLanguages;
        public UIntPtr NSpeakers;
        public ulong TensorCount;
        public ulong WeightBytes;

        /// <summary>An empty struct with StructSize set, ready for qt_model_get_info.</summary>
        public static ModelInfoNative Create()
        {
            var info = new ModelInfoNative();
            info.StructSize = (uint)Marshal.SizeOf(typeof(ModelInfoNative));
            return info;
        }
    }

    /// <summary>qt_clone_params. Fill with Create(), then change fields.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct CloneParams
    {
        public uint StructSize;
        public int Mode;         // QT_CLONE_AUTO, QT_CLONE_XVECTOR or QT_CLONE_ICL
        public float MinSeconds; // shortest reference accepted (default 1)
        public float MaxSeconds; // longest reference accepted (default 30)

        /// <summary>The library's defaults (qt_clone_params_default).</summary>
        public static CloneParams Create()
        {
            var p = new CloneParams();
            Status.Check("qt_clone_params_default",
                NativeMethods.qt_clone_params_default(ref p, (UIntPtr)Marshal.SizeOf(typeof(CloneParams))));
            return p;
        }
    }

    /// <summary>qt_voice_info. RefText, Speaker and Description point into the voice.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct VoiceInfoNative
    {
        public uint StructSize;
        public int Kind;
        public UIntPtr EmbeddingDim;
        public UIntPtr RefFrames;
        public IntPtr RefText;
        public IntPtr Speaker;
        public IntPtr Description;
    }

    /// <summary>qt_gen_params. Language and Instruct are native UTF-8 pointers (GenerateParams
    /// manages them); AbortCb is a native function pointer.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct GenParamsNative
    {
        public uint StructSize;
        public int DoSample;
        public IntPtr Language;
        public IntPtr Instruct;
        public float Temperature;
        public int TopK;
        public float TopP;
        public float RepetitionPenalty;
        public int SubDoSample;
        public float SubTemperature;
        public int SubTopK;
        public float SubTopP;
        public int MaxFrames;
        public int ChunkFrames;
        public ulong Seed;
        public int OutputSampleRate;
        public int NonStreamingMode;
        public IntPtr AbortCb;
        public IntPtr AbortUserData;
        /// <summary>Frames in the first chunk (0: the default, 1); later chunks double up to
        /// ChunkFrames; a value of at least ChunkFrames means no ramp (since v2).</summary>
        public int FirstChunkFrames;
        /// <summary>Must be 0 (since v2).</summary>
        public int Reserved;
    }

    /// <summary>qt_chunk, as handed to a ChunkCallback (valid only during the call).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ChunkNative
    {
        public uint StructSize;
        public int IsLast;
        public IntPtr Samples;
        public UIntPtr NSamples;
        public ulong FirstSample;
        public int SampleRate;
        public int Index;
        public int FirstFrame;
        public int NFrames;
    }

    /// <summary>qt_audio_info. Samples points into the audio.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct AudioInfoNative
    {
        public uint StructSize;
        public int Finish;
        public int SampleRate;
        public int Channels;
        public int NFrames;
        public int ChunkOffset;
        public IntPtr Samples;
        public UIntPtr NSamples;
        public double PrefillMs;
        public double FrameMs;
        public double DecodeMs;
        public double CallbackMs;
        public double FirstChunkMs;
        public double TotalMs;
        public double Rtf;
        /// <summary>Rows of the talker prompt (since v2).</summary>
        public int PromptRows;
        /// <summary>Of those, rows the voice prefix cache supplied (since v2).</summary>
        public int ReusedPromptRows;
    }

    /// <summary>qt_stream_info.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StreamInfoNative
    {
        public uint StructSize;
        public int State;          // NativeMethods.QT_STREAM_*
        public int SampleRate;
        public int Finish;         // QT_FINISH_EOS / _FRAME_LIMIT once finished, else 0
        public UIntPtr Capacity;
        public ulong SamplesWritten;
        public ulong SamplesRead;
        public double FirstAudioMs;
    }
}
