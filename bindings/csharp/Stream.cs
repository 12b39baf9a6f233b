// Stream.cs: a generation on a background thread whose audio an engine's audio callback pulls
// without blocking (qt_stream). Unity: call Read from OnAudioFilterRead or a
// PCMReaderCallback with the buffer it hands you; it never waits, allocates or locks.
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    public sealed class SpeechStream : IDisposable
    {
        readonly StreamHandle handle;

        SpeechStream(StreamHandle handle)
        {
            this.handle = handle;
        }

        public StreamHandle Handle { get { return handle; } }

        /// <summary>Starts speaking on a background thread and returns at once. `capacity`: samples
        /// the ring holds (0: two seconds). p.ShouldAbort must be null: stop with Cancel.</summary>
        public static SpeechStream Start(Model model, Voice voice, string text, GenerateParams p, int capacity)
        {
            if (model == null) throw new ArgumentNullException("model");
            if (voice == null) throw new ArgumentNullException("voice");
            if (text == null) throw new ArgumentNullException("text");
            if (capacity < 0) throw new ArgumentOutOfRangeException("capacity");
            if (p == null) p = model.DefaultGenerateParams();
            if (p.ShouldAbort != null) throw new ArgumentException("a stream is stopped with Cancel, not ShouldAbort", "p");
            GCHandle language, instruct;
            GenParamsNative native = p.Pin(out language, out instruct);
            try
            {
                native.AbortCb = IntPtr.Zero;
                native.AbortUserData = IntPtr.Zero;
                StreamHandle h;
                int status = NativeMethods.qt_stream_start(model.Handle, voice.Handle, Utf8.Encode(text), ref native,
                    (UIntPtr)capacity, out h);
                if (status < 0)
                {
                    QwenttsException error = Status.Error("qt_stream_start", status); // before any other call
                    if (h != null) h.Dispose();
                    throw error;
                }
                return new SpeechStream(h);
            }
            finally
            {
                GenerateParams.Unpin(language, instruct);
            }
        }

        /// <summary>Copies up to `count` ready samples to buffer[0..]; returns how many. `ended`: nothing
        /// will ever come again. Never blocks; fill the rest of the engine's buffer with silence.</summary>
        public int Read(float[] buffer, int count, out bool ended)
        {
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (count < 0 || count > buffer.Length) throw new ArgumentOutOfRangeException("count");
            UIntPtr n;
            int end;
            int status = NativeMethods.qt_stream_read(handle, buffer, (UIntPtr)count, out n, out end);
            if (status < 0) throw Status.Error("qt_stream_read", status);
            ended = end != 0;
            return (int)n.ToUInt64();
        }

        /// <summary>Asks the generation to stop (within one frame); what was made stays readable.</summary>
        public void Cancel()
        {
            Status.Check("qt_stream_cancel", NativeMethods.qt_stream_cancel(handle));
        }

        /// <summary>State, rate, counters (takes a lock: not for the audio thread).</summary>
        public StreamInfoNative GetInfo()
        {
            var raw = new StreamInfoNative();
            raw.StructSize = (uint)Marshal.SizeOf(typeof(StreamInfoNative));
            Status.Check("qt_stream_get_info", NativeMethods.qt_stream_get_info(handle, ref raw));
            return raw;
        }

        /// <summary>Throws the generation's failure, if it failed; returns QT_STATUS_OK or
        /// QT_STATUS_ABORTED (cancelled) otherwise.</summary>
        public int CheckResult()
        {
            return Status.Check("qt_stream_result", NativeMethods.qt_stream_result(handle));
        }

        /// <summary>Cancels the generation, waits for its thread and frees the stream.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
