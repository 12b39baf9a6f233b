// Handles.cs: one SafeHandle per qwentts object type. ReleaseHandle calls qt_free, so objects are
// released exactly once, by Dispose or by the finalizer, even when the owner forgets.
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>Owns a qt_model*. Thread-safe to use from several threads at once.</summary>
    public sealed class ModelHandle : SafeHandle
    {
        public ModelHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.qt_free(handle);
            return true;
        }
    }

    /// <summary>Owns a qt_voice*. Thread-safe to use from several threads at once.</summary>
    public sealed class VoiceHandle : SafeHandle
    {
        public VoiceHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.qt_free(handle);
            return true;
        }
    }

    /// <summary>Owns a qt_audio* (generated samples).</summary>
    public sealed class AudioHandle : SafeHandle
    {
        public AudioHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.qt_free(handle);
            return true;
        }
    }

    /// <summary>Owns a qt_stream*. Freeing it cancels the generation and waits for its thread.</summary>
    public sealed class StreamHandle : SafeHandle
    {
        public StreamHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.qt_free(handle);
            return true;
        }
    }
}
