// Qwentts.cs: the idiomatic C# layer over NativeMethods: exceptions instead of statuses, strings
// instead of pointers, IDisposable objects. Compiles with Mono's mcs (C# 6), .NET and Unity.
//
//   using (var model = Qwentts.Model.Load("tests/fixtures/tiny-base"))
//       Console.WriteLine(model.GetInfo().SizeLabel);
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Qwentts
{
    /// <summary>A failed qwentts call. Message: "QT_STATUS_NAME: detail from qt_last_error()".</summary>
    public sealed class QwenttsException : Exception
    {
        public QwenttsException(int status, string statusName, string message) : base(message)
        {
            Status = status;
            StatusName = statusName;
        }

        /// <summary>The QT_STATUS_* value (negative).</summary>
        public int Status { get; private set; }
        /// <summary>"QT_STATUS_NOT_FOUND" and so on.</summary>
        public string StatusName { get; private set; }
    }

    /// <summary>Status helpers. The call is synchronous, so the thread's last error is read right after it.</summary>
    public static class Status
    {
        public static string Describe(int status)
        {
            return Utf8.Decode(NativeMethods.qt_status_str(status));
        }

        /// <summary>The exception for a failed call; reads qt_last_error() now, before any other call.</summary>
        public static QwenttsException Error(string call, int status)
        {
            string text = Describe(status);
            string detail = Utf8.Decode(NativeMethods.qt_last_error());
            string name = text.Split(':')[0];
            return new QwenttsException(status, name, detail.Length > 0 ? name + ": " + detail : call + ": " + text);
        }

        /// <summary>Throws for a negative status; returns the status otherwise.</summary>
        public static int Check(string call, int status)
        {
            if (status < 0) throw Error(call, status);
            return status;
        }
    }

    /// <summary>UTF-8 conversions for the C API.</summary>
    public static class Utf8
    {
        /// <summary>A NUL-terminated UTF-8 copy of s.</summary>
        public static byte[] Encode(string s)
        {
            return Encoding.UTF8.GetBytes(s + "\0");
        }

        /// <summary>Copies a NUL-terminated UTF-8 string owned by the library.</summary>
        public static string Decode(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }
    }

    /// <summary>Marks callbacks for Unity's IL2CPP (it matches the attribute by name).</summary>
    [AttributeUsage(AttributeTargets.Method)]
    sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }

    /// <summary>Library-wide functions: versions, devices and logging.</summary>
    public static class Library
    {
        public static string Version { get { return Utf8.Decode(NativeMethods.qt_version()); } }
        public static uint AbiVersion { get { return NativeMethods.qt_abi_version(); } }
        public static string BuildInfo { get { return Utf8.Decode(NativeMethods.qt_build_info()); } }

        /// <summary>CUDA devices the library can use (Model.Load devices 0 .. count-1); 0 when it was
        /// built without CUDA or no NVIDIA driver can be loaded.</summary>
        public static int DeviceCount() { return NativeMethods.qt_device_count(); }

        /// <summary>Throws unless the loaded library has the ABI these bindings were written for.</summary>
        public static void RequireAbi()
        {
            if (AbiVersion != NativeMethods.QT_ABI_VERSION)
                throw new InvalidOperationException("qwentts library ABI " + AbiVersion +
                    " differs from the bindings' " + NativeMethods.QT_ABI_VERSION);
        }

        static Action<int, string> logHandler;
        static readonly LogCallback Trampoline = OnLog; // one delegate, alive for the process

        [MonoPInvokeCallback(typeof(LogCallback))]
        static void OnLog(int level, IntPtr message, IntPtr userData)
        {
            try
            {
                var handler = logHandler;
                if (handler != null) handler(level, Utf8.Decode(message));
            }
            catch (Exception)
            {
                // An exception must not unwind into native code; the message is dropped.
            }
        }

        /// <summary>Routes library log messages to handler (any thread); null restores stderr.</summary>
        public static void SetLogHandler(Action<int, string> handler)
        {
            logHandler = handler;
            Status.Check("qt_log_set", NativeMethods.qt_log_set(handler == null ? null : Trampoline, IntPtr.Zero));
        }

        /// <summary>QT_LOG_OFF .. QT_LOG_TRACE.</summary>
        public static void SetLogLevel(int level)
        {
            Status.Check("qt_log_set_level", NativeMethods.qt_log_set_level(level));
        }
    }
}
